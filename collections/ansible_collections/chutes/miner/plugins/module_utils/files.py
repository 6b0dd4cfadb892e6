# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Whole-file writes of the collection's modules, through AnsibleModule.atomic_move.

``replace_file`` (bytes) and ``place_stream`` (a stream, hashed as it is copied) are the one way
a module of this collection puts a file in place: written to a temporary file in the same
directory, given its mode (and root ownership when the module runs as root), then renamed over
the old file by ``atomic_move``, which also keeps the SELinux context right. A reader never
sees a half-written file, and the file is never readable by more than ``mode`` allows, not even
for a moment.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

from ansible.module_utils.basic import AnsibleModule

# atomic_move gives a file it creates 0666 & ~umask; with this umask it is at most 0600 until
# replace_file sets the wanted mode.
_CREATE_UMASK = 0o077


def replace_file(
    module: AnsibleModule, path: str, data: bytes, mode: int, dir_mode: int = 0o755
) -> None:
    """Put ``data`` at ``path`` with ``mode``; missing parent directories get ``dir_mode``."""
    _put(module, path, mode, dir_mode, lambda fh: fh.write(data))


def place_stream(
    module: AnsibleModule,
    path: str,
    src: IO[bytes],
    mode: int,
    dir_mode: int = 0o755,
    chunk: int = 1 << 20,
) -> str:
    """Copy ``src`` to ``path`` as ``replace_file`` does, in chunks; the sha256 of what it wrote."""
    digest = hashlib.sha256()

    def write(fh: IO[bytes]) -> None:
        for block in iter(lambda: src.read(chunk), b""):
            digest.update(block)
            fh.write(block)

    _put(module, path, mode, dir_mode, write)
    return digest.hexdigest()


def _put(
    module: AnsibleModule, path: str, mode: int, dir_mode: int, write: Callable[[IO[bytes]], Any]
) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=dir_mode, exist_ok=True)
    root = os.geteuid() == 0  # always on hosts; unit tests also run unprivileged
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".chutes-miner.")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, mode)
        if root:
            os.chown(tmp, 0, 0)
        umask = os.umask(_CREATE_UMASK)
        try:
            module.atomic_move(tmp, path, keep_dest_attrs=False)
        finally:
            os.umask(umask)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    # atomic_move set a new file's mode and owner from the umask and the process's user.
    os.chmod(path, mode)
    if root:
        os.chown(path, 0, 0)


def load_json(path: str, default: Any) -> Any:
    """The parsed file, or ``default`` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def save_json(module: AnsibleModule, path: str, data: Any) -> None:
    """Write sorted JSON with a trailing newline, 0600, in a directory created 0700."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    replace_file(module, path, text.encode("utf-8"), 0o600, dir_mode=0o700)
