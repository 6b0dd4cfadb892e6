"""Every module of the collection carries documentation that ansible-doc can parse (a YAML slip
in DOCUMENTATION hides the module from `ansible-doc` and Galaxy), and every option in it is
described and typed; EXAMPLES and RETURN parse too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.collection.roles import COLLECTION, REPO

BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_module_documentation_parses(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(REPO / "collections")
    name = f"chutes.miner.{module}"
    proc = subprocess.run(
        [str(BIN / "ansible-doc"), "-t", "module", "--json", name],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "ERROR" not in proc.stderr, proc.stderr
    entry = json.loads(proc.stdout)[name]
    doc = entry["doc"]
    assert doc["short_description"]
    for option, spec in (doc.get("options") or {}).items():
        assert spec.get("description"), f"{name}: option {option} has no description"
        assert spec.get("type"), f"{name}: option {option} has no type"
    assert entry.get("examples"), f"{name}: no EXAMPLES"
    assert entry.get("return") is not None, f"{name}: no RETURN"
