"""The operator guide and design docs hold together: every relative link in docs/ and the
READMEs points at a file that exists and, with a #fragment, at a heading that exists (GitHub's
anchor rules), every guide page exists in both languages, and nothing cites material outside
the repository."""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

from tests.ansible_env import REPO

DOCS = REPO / "docs"
PAGES = sorted([*DOCS.rglob("*.md"), REPO / "README.md", REPO / "README_CN.md"])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def _anchor(heading: str) -> str:
    """GitHub's heading id: lower case, only letters, marks, digits, '_', ' ' and '-',
    spaces turned into '-'."""
    text = heading.strip().lower()
    kept = "".join(
        c
        for c in text
        if c in " -_" or unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "Pc"
    )
    return kept.replace(" ", "-")


def _outside_fences(path: Path) -> list[str]:
    lines, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            lines.append(line)
    return lines


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _outside_fences(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*$", line)
        if not m:
            continue
        base = _anchor(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def _links(path: Path) -> list[str]:
    return [m.group(1) for line in _outside_fences(path) for m in LINK.finditer(line)]


def test_anchor_rules() -> None:
    assert _anchor("5.4 数据盘：先挂载再使用") == "54-数据盘先挂载再使用"
    assert _anchor("Status / 完成情况") == "status--完成情况"
    assert _anchor("5.3 `chutes_external_ip` is the EIP, not the VPC address") == (
        "53-chutes_external_ip-is-the-eip-not-the-vpc-address"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # absolute URL
        path_part, _, fragment = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, broken


def test_every_guide_page_exists_in_both_languages() -> None:
    zh = {p.name for p in (DOCS / "zh").glob("*.md")}
    en = {p.name for p in (DOCS / "en").glob("*.md")}
    assert zh and zh == en


def test_nothing_cites_material_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(r"shared[/ ](spec|research)|china-mirrors\.md|test-lab\.md")
    hits = []
    for name in tracked:
        path = REPO / name
        if path == Path(__file__).resolve():  # this file holds the pattern itself
            continue
        if not path.is_file() or path.suffix in {".png", ".gz", ".asc", ".pyc"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        lines = enumerate(text.splitlines(), 1)
        hits += [f"{name}:{i}" for i, line in lines if pattern.search(line)]
    assert not hits, hits
