"""The CLI venv helper: interpreter discovery and the skip condition (no build here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.cli_venv import NoInterpreter, find_python312


def test_no_312_interpreter_means_skip(tmp_path: Path) -> None:
    shim = tmp_path / "python3.12"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    candidates = [str(tmp_path / "missing"), str(shim)]
    if sys.version_info[:2] != (3, 12):
        candidates.append(sys.executable)  # runs, but the wrong version
    with pytest.raises(NoInterpreter, match="3.12"):
        find_python312(candidates)


def test_finds_a_working_312_when_present() -> None:
    try:
        found = find_python312()
    except NoInterpreter:
        pytest.skip("no Python 3.12 on this machine")
    assert Path(found).exists()
