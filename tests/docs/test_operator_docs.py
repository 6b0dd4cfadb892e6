"""The operator guide's commands and words: every `make` target it names exists and `make help`
lists every target; the Chinese pages, messages and example inventory keep the glossary's terms
(docs/glossary.md); the operator guide never names the network. Links: test_links.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.ansible_env import REPO

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("zh/*.md")) + sorted(DOCS.glob("en/*.md"))
ROOT_PAGES = [REPO / "README.md", REPO / "README_CN.md"]
COLLECTION = REPO / "collections/ansible_collections/chutes/miner"
# Chinese text anywhere an operator reads it: docs, READMEs, role READMEs, the example inventory,
# and the messages of tasks, templates and plugins.
CHINESE_SURFACES = [
    *PAGES,
    *ROOT_PAGES,
    *COLLECTION.glob("roles/*/README.md"),
    *COLLECTION.glob("roles/*/tasks/*.yml"),
    *COLLECTION.glob("roles/*/templates/**/*.j2"),
    *COLLECTION.glob("plugins/**/*.py"),
    *(REPO / "inventories/example").rglob("*.yml"),
]
# Wrong translations the glossary names: 热键 is a keyboard shortcut, 库存 is warehouse stock;
# inventory validation is 节点清单校验, never a bare 清单校验.
BANNED = {
    "热键": "hotkey stays in English",
    "库存": "inventory is 节点清单",
    "Inventory 校验": "inventory validation is 节点清单校验",
}
BARE_VALIDATION = re.compile(r"(?<!节点)清单校验")
# The operator guide never names the network or its subnet.
UNNAMED = re.compile(r"bittensor|btcli|subnet|子网|netuid", re.IGNORECASE)


def test_make_targets_named_in_the_guide_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, flags=re.MULTILINE))
    named = {
        m
        for page in PAGES + ROOT_PAGES
        for m in re.findall(r"(?:`|^\s*|# or: )make ([a-z][a-z0-9-]*)", page.read_text(), re.M)
    }
    assert named, "the guide names no make target"
    assert named <= targets, f"not in the Makefile: {sorted(named - targets)}"


def test_every_make_target_is_in_make_help() -> None:
    makefile = (REPO / "Makefile").read_text()
    phony = set(
        re.search(r"^\.PHONY:(.*?)\n\n", makefile, re.S | re.M)[1].replace("\\", " ").split()
    )
    helped = set(re.findall(r'@echo "make ([a-z][a-z0-9-]*)', makefile))
    assert phony == helped, f"missing from make help: {sorted(phony - helped)}"


@pytest.mark.parametrize(
    "path", sorted(set(CHINESE_SURFACES)), ids=lambda p: str(p.relative_to(REPO))
)
def test_glossary_terms(path: Path) -> None:
    text = path.read_text()
    if path.name == "glossary.md":
        return  # it names the wrong terms on purpose
    wrong = [f"{term}: {why}" for term, why in BANNED.items() if term in text]
    wrong += [
        f"line {text[: m.start()].count(chr(10)) + 1}: 清单校验 without 节点"
        for m in BARE_VALIDATION.finditer(text)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("page", [*PAGES, *(REPO / "inventories/example").rglob("*.yml")], ids=str)
def test_operator_pages_never_name_the_network(page: Path) -> None:
    if page.parent == DOCS and page.name in (
        "runtime-contract.md",
        "provisioning.md",
        "testing.md",
        "architecture.md",
        "mirrors.md",
    ):
        return  # design documents for developers, not the operator guide
    hits = [m.group(0) for m in UNNAMED.finditer(page.read_text())]
    assert not hits, hits
