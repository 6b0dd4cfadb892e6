"""Every plugin of the collection shows its own documentation in ``ansible-doc`` and on Galaxy.

Galaxy's importer names a filter or test plugin after its file and looks its docs up under that
name, and one plugin without docs makes ``ansible-doc`` (and so the importer) drop the docs of
every plugin of its type. So: one filter or test per file, named after the file, with its own
DOCUMENTATION, EXAMPLES, RETURN and version_added. Modules: every option described and typed,
an author line ansible-test accepts.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible_env import REPO
from tests.collection.roles import COLLECTION

BIN = Path(sys.executable).parent
PLUGINS = COLLECTION / "plugins"
MODULES = sorted(p.stem for p in (PLUGINS / "modules").glob("*.py"))
JINJA = sorted((kind, p) for kind in ("filter", "test") for p in (PLUGINS / kind).glob("*.py"))
# ansible-test's rule: "Name (@github-handle)", or "Name (!UNKNOWN)" without a handle.
AUTHOR = re.compile(r"^\w.*(\(@[\w-]+\)|\(!UNKNOWN\))$")
VERSION = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())["version"]


def _blocks(path: Path) -> dict[str, Any]:
    """DOCUMENTATION, EXAMPLES and RETURN of a plugin file, parsed."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            name = getattr(node.targets[0], "id", "")
            if name in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                found[name] = yaml.safe_load(str(node.value.value))
    return found


@cache
def _ansible_doc(kind: str, names: tuple[str, ...]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(REPO / "collections")
    proc = subprocess.run(
        [str(BIN / "ansible-doc"), "-t", kind, "--json", *names],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "ERROR" not in proc.stderr, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@pytest.mark.parametrize("module", MODULES)
def test_module_documentation_parses(module: str) -> None:
    name = f"chutes.miner.{module}"
    entry = _ansible_doc("module", tuple(f"chutes.miner.{m}" for m in MODULES))[name]
    doc = entry["doc"]
    assert doc["short_description"]
    assert str(doc.get("version_added", "")), f"{name}: no version_added"
    authors = doc["author"] if isinstance(doc["author"], list) else [doc["author"]]
    assert all(AUTHOR.match(a) for a in authors), f"{name}: author {authors} (ansible-test format)"
    for option, spec in (doc.get("options") or {}).items():
        assert spec.get("description"), f"{name}: option {option} has no description"
        assert spec.get("type"), f"{name}: option {option} has no type"
    assert entry.get("examples"), f"{name}: no EXAMPLES"
    assert entry.get("return") is not None, f"{name}: no RETURN"


@pytest.mark.parametrize(("kind", "path"), JINJA, ids=[f"{k}/{p.stem}" for k, p in JINJA])
def test_filter_and_test_plugins_are_one_per_file_with_their_own_docs(
    kind: str, path: Path
) -> None:
    blocks = _blocks(path)
    doc = blocks.get("DOCUMENTATION") or {}
    assert doc.get("name") == path.stem, f"{path.name}: DOCUMENTATION names {doc.get('name')!r}"
    assert str(doc.get("version_added", "")), f"{path.name}: no version_added"
    assert AUTHOR.match(str(doc.get("author", ""))), f"{path.name}: author {doc.get('author')!r}"
    assert doc.get("short_description") and doc.get("options", {}).get("_input")
    assert blocks.get("EXAMPLES"), f"{path.name}: no EXAMPLES"
    assert (blocks.get("RETURN") or {}).get("_value"), f"{path.name}: no RETURN _value"

    plugin = importlib.import_module(f"ansible_collections.chutes.miner.plugins.{kind}.{path.stem}")
    entry = plugin.FilterModule().filters() if kind == "filter" else plugin.TestModule().tests()
    assert list(entry) == [path.stem], f"{path.name} registers {sorted(entry)}"

    names = tuple(f"chutes.miner.{p.stem}" for k, p in JINJA if k == kind)
    shown = _ansible_doc(kind, names)[f"chutes.miner.{path.stem}"]["doc"]
    assert shown["name"] == path.stem and Path(shown["filename"]).name == path.name


def test_new_plugins_carry_the_version_of_their_first_release() -> None:
    """version_added is a release of this collection: at most the version in galaxy.yml."""
    for path in [PLUGINS / "modules" / f"{m}.py" for m in MODULES] + [p for _, p in JINJA]:
        added = str((_blocks(path).get("DOCUMENTATION") or {}).get("version_added", ""))
        parts = [int(x) for x in added.split(".")] if re.fullmatch(r"\d+\.\d+\.\d+", added) else []
        assert parts and parts <= [int(x) for x in VERSION.split(".")], f"{path.name}: {added!r}"
