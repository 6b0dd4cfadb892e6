"""The real `chutes-miner` CLI for the tests: a Python 3.12 venv with chutes-miner-cli, built
once per machine and cached under a path keyed by the CLI version.

Order: `$CHUTES_MINER_CLI_VENV` (an existing venv, used as is); else the cache
`$CHUTES_MINER_CACHE_DIR` (default /var/cache/chutes-miner, or ~/.cache/chutes-miner when that
is not writable) / `cli-venv-<version>`, built on first use by a 3.12 interpreter
(`$CHUTES_MINER_CLI_PYTHON`, `python3.12` on PATH, pyenv versions, /usr/bin, /usr/local/bin).
pip runs with the machine's own configuration (pip.conf, PIP_* variables): no index is named
here. The build happens in a fresh directory under an exclusive lock and is published by
renaming a symlink, so a reader sees either no venv or a complete one, never half of one.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

CLI_VERSION = "0.9.0"
PIP_TIMEOUT_S = 1200


class NoInterpreter(Exception):
    """No Python 3.12 on this machine: the real-CLI tests are skipped."""


def _candidates() -> Iterator[str]:
    if override := os.environ.get("CHUTES_MINER_CLI_PYTHON"):
        yield override
    if found := shutil.which("python3.12"):
        yield found
    roots = {os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv"), "/root/.pyenv"}
    for root in sorted(r for r in roots if r):
        yield from sorted(glob.glob(os.path.join(root, "versions", "3.12*", "bin", "python3.12")))
    yield from ("/usr/local/bin/python3.12", "/usr/bin/python3.12")


def find_python312(candidates: Iterable[str] | None = None) -> str:
    """The first candidate that really runs and is 3.12 (a pyenv shim may exist yet fail)."""
    for cand in _candidates() if candidates is None else candidates:
        if not os.access(cand, os.X_OK):
            continue
        probe = subprocess.run(
            [cand, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return cand
    raise NoInterpreter("no Python 3.12 interpreter found (chutes-miner-cli needs >= 3.12)")


def cache_dir() -> Path:
    if configured := os.environ.get("CHUTES_MINER_CACHE_DIR"):
        return Path(configured)
    system = Path("/var/cache/chutes-miner")
    try:
        system.mkdir(parents=True, exist_ok=True)
        if os.access(system, os.W_OK):
            return system
    except OSError:
        pass
    return Path(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "chutes-miner"


def _ready(venv: Path) -> bool:
    return (venv / "bin" / "chutes-miner").exists() and (venv / ".complete").exists()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # xdist workers wait here for the one that builds
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(python: str, base: Path) -> Path:
    build = Path(tempfile.mkdtemp(prefix=f".cli-venv-{CLI_VERSION}.", dir=base))
    try:
        build.chmod(0o755)  # a machine-wide cache: readable by every user
        subprocess.run([python, "-m", "venv", str(build)], check=True, timeout=300)
        pip = [str(build / "bin" / "python"), "-m", "pip", "install", "-q"]
        done = subprocess.run(
            [*pip, f"chutes-miner-cli=={CLI_VERSION}"],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip install chutes-miner-cli failed: {done.stderr[-2000:]}")
        subprocess.run(
            [str(build / "bin" / "python"), "-c", "import chutes_miner_cli"],
            check=True,
            timeout=60,
        )
        (build / ".complete").write_text(CLI_VERSION + "\n")
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return build


def ensure_cli_venv() -> Path:
    """Path of a complete venv holding chutes-miner-cli; builds it at most once per machine.
    Raises NoInterpreter when no 3.12 exists; a failed pip install is an error, not a skip."""
    if configured := os.environ.get("CHUTES_MINER_CLI_VENV"):
        if not (Path(configured) / "bin" / "chutes-miner").exists():
            raise RuntimeError(f"CHUTES_MINER_CLI_VENV={configured} has no bin/chutes-miner")
        return Path(configured)
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    link = base / f"cli-venv-{CLI_VERSION}"
    if _ready(link):
        return link
    python = find_python312()
    with _locked(base / f".cli-venv-{CLI_VERSION}.lock"):
        if _ready(link):
            return link
        build = _build(python, base)
        tmp_link = base / f".cli-venv-{CLI_VERSION}.link-{os.getpid()}"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(build.name)
        old = link.resolve() if link.is_symlink() else None
        if link.exists() and not link.is_symlink():
            shutil.rmtree(link)  # a plain directory from an interrupted older scheme
        os.replace(tmp_link, link)  # atomic publish
        if old is not None and old != build and old.parent == base:
            shutil.rmtree(old, ignore_errors=True)
    return link
