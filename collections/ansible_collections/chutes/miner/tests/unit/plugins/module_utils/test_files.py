"""module_utils/files.py: every whole-file write of the collection's modules goes through
AnsibleModule.atomic_move, and a file is never readable by more than its mode allows."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.module_utils.files import (
    load_json,
    place_stream,
    replace_file,
    save_json,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".chutes-miner.")]


def test_a_new_file_is_never_wider_than_its_mode(
    tmp_path: Path, module: AnsibleModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_move = module.atomic_move

    def move(src: str, dest: str, **kwargs: Any) -> None:
        real_move(src, dest, **kwargs)
        seen.append(_mode(Path(dest)))  # before replace_file sets the mode again

    monkeypatch.setattr(module, "atomic_move", move)
    umask = os.umask(0o022)
    try:
        replace_file(module, str(tmp_path / "new" / "secret"), b"k\n", 0o600, dir_mode=0o700)
        assert os.umask(0o022) == 0o022  # the process umask is back
    finally:
        os.umask(umask)
    assert seen and seen[0] & 0o077 == 0
    assert _mode(tmp_path / "new" / "secret") == 0o600
    assert _mode(tmp_path / "new") == 0o700


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755])
def test_replace_sets_content_and_mode_atomically(
    tmp_path: Path, module: AnsibleModule, mode: int
) -> None:
    path = tmp_path / "f.conf"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    replace_file(module, str(path), b"new\n", mode)
    assert path.read_bytes() == b"new\n" and _mode(path) == mode
    assert path.stat().st_ino != inode  # renamed over, not rewritten in place
    assert _leftovers(tmp_path) == []


def test_a_failed_move_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, module: AnsibleModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.conf"
    path.write_text("old\n")

    def fail(src: str, dest: str, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(module, "atomic_move", fail)
    with pytest.raises(OSError, match="disk full"):
        replace_file(module, str(path), b"new\n", 0o644)
    assert path.read_text() == "old\n" and _leftovers(tmp_path) == []


def test_json_state_round_trip(tmp_path: Path, module: AnsibleModule) -> None:
    path = tmp_path / "state" / "index.json"
    assert load_json(str(path), {"files": {}}) == {"files": {}}  # missing: the default
    save_json(module, str(path), {"b": 1, "a": [2]})
    assert path.read_text() == json.dumps({"a": [2], "b": 1}, indent=2) + "\n"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert load_json(str(path), None) == {"a": [2], "b": 1}
    path.write_text("{not json")
    assert load_json(str(path), []) == []  # unreadable: the default


def test_place_stream_copies_in_chunks_and_returns_the_sha256(
    tmp_path: Path, module: AnsibleModule
) -> None:
    data = bytes(range(256)) * 41  # 10,496 bytes: several chunks and a short last one
    dest = tmp_path / "bin" / "tool"
    digest = place_stream(module, str(dest), io.BytesIO(data), 0o755, chunk=1000)
    assert digest == hashlib.sha256(data).hexdigest()
    assert dest.read_bytes() == data and _mode(dest) == 0o755
    assert _leftovers(dest.parent) == []
    # over an existing file: replaced whole, same mode rule
    again = place_stream(module, str(dest), io.BytesIO(b"new"), 0o700)
    assert again == hashlib.sha256(b"new").hexdigest() and dest.read_bytes() == b"new"
    assert _mode(dest) == 0o700


def test_place_stream_leaves_nothing_when_the_source_fails(
    tmp_path: Path, module: AnsibleModule
) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError("connection reset")

    dest = tmp_path / "tool"
    dest.write_bytes(b"old")
    with pytest.raises(OSError, match="connection reset"):
        place_stream(module, str(dest), Broken(), 0o755)
    assert dest.read_bytes() == b"old" and _leftovers(tmp_path) == []
