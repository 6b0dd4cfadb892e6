"""Stand-in for the get-pip.py script ansible-test downloads to put pip into a new virtual
environment. That download comes from a host outside the package index, which is not reachable
from every network this project is built in. This script does the same with what is already
here: pip from the Python's own ensurepip, then ``pip install`` of the pinned packages ansible-test
asks for (from the package index pip is configured for).

sanity.sh copies it to ~/.ansible/test/cache/get_pip_<version>.py when that file is missing.
"""

from __future__ import annotations

import subprocess
import sys

# get-pip.py options that pip itself does not have
_GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    subprocess.run(
        [sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL
    )
    args = [a for a in sys.argv[1:] if a not in _GET_PIP_ONLY]
    return subprocess.run([sys.executable, "-m", "pip", "install", *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
