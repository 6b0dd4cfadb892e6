"""chutes.miner.mirror_state write: one call writes every rendered file that differs."""

from __future__ import annotations

import os
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.modules.mirror_state import write_files


def test_writes_only_what_differs_and_reports_diffs(tmp_path: Path, module: AnsibleModule) -> None:
    a, b = tmp_path / "a.conf", tmp_path / "b.json"
    files = [
        {"dest": str(a), "content": "x=1\n"},
        {"dest": str(b), "content": "{}\n", "mode": "0600"},
    ]
    written, diffs = write_files(module, files, check=True)
    assert written == [str(a), str(b)] and not a.exists()
    assert diffs[0]["before_header"] == "(absent)" and diffs[0]["after"] == "x=1\n"
    assert write_files(module, files)[0] == [str(a), str(b)]
    assert a.read_text() == "x=1\n" and (b.stat().st_mode & 0o777) == 0o600
    assert write_files(module, files) == ([], [])  # a rerun changes nothing
    os.chmod(b, 0o644)
    a.write_text("x=2\n")
    written, diffs = write_files(module, files)
    assert written == [str(a), str(b)] and diffs[0]["before"] == "x=2\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".chutes-miner.")]
