"""The collection's metadata tells the truth: galaxy.yml, meta/runtime.yml, the roles' meta,
README.md and LICENSE agree with each other and with what the content uses and CI tests."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tests.ansible_env import REPO
from tests.collection.roles import COLLECTION, all_roles

GALAXY = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
README = (COLLECTION / "README.md").read_text()
# Where the `ansible` package put the collections it ships (next to ansible-core).
SHIPPED = Path(sys.executable).parent.parent.glob("lib/python3*/site-packages/ansible_collections")
CONTENT_SUFFIXES = {".yml", ".yaml", ".j2", ".py"}


def _tested_core() -> tuple[int, int]:
    """major.minor of the ansible-core that requirements-dev.txt pins (what CI tests)."""
    pins = (REPO / "requirements-dev.txt").read_text()
    match = re.search(r"^ansible-core==(\d+)\.(\d+)\.", pins, re.M)
    assert match, "requirements-dev.txt pins no ansible-core"
    return int(match.group(1)), int(match.group(2))


def _used_collections() -> set[str]:
    """External collections named by FQCN in roles/ and plugins/. In Python only imports from
    ``ansible_collections.`` count: ``ansible.utils.display`` is ansible-core, not a collection."""
    known = {
        f"{ns.name}.{coll.name}"
        for root in SHIPPED
        for ns in root.iterdir()
        if ns.is_dir() and not ns.name.startswith("_")
        for coll in ns.iterdir()
        if coll.is_dir()
    } - {"chutes.miner"}
    names = "|".join(re.escape(c) for c in sorted(known))
    fqcn = re.compile(rf"\b({names})\.\w+")
    imported = re.compile(rf"\bansible_collections\.({names})\.\w+")
    used: set[str] = set()
    for top in ("roles", "plugins"):
        for path in (COLLECTION / top).rglob("*"):
            if path.suffix in CONTENT_SUFFIXES and path.is_file():
                pattern = imported if path.suffix == ".py" else fqcn
                used.update(pattern.findall(path.read_text(errors="replace")))
    return used


def test_readme_and_license_exist_and_agree_with_galaxy_yml() -> None:
    assert (COLLECTION / GALAXY["readme"]).is_file()
    assert GALAXY["license"] == ["MIT"]
    assert (COLLECTION / "LICENSE").read_text().startswith("MIT License\n")
    for role in all_roles():
        meta = yaml.safe_load((role.path / "meta" / "main.yml").read_text())["galaxy_info"]
        assert meta["license"] == "MIT", role.name


def test_dependencies_are_exactly_the_collections_used() -> None:
    assert set(GALAXY.get("dependencies") or {}) == _used_collections()


def test_requires_ansible_is_the_version_ci_tests() -> None:
    major, minor = _tested_core()
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"] == f">={major}.{minor}.0"
    for role in all_roles():
        meta = yaml.safe_load((role.path / "meta" / "main.yml").read_text())["galaxy_info"]
        assert meta["min_ansible_version"] == f"{major}.{minor}", role.name


def test_links_name_one_home_and_the_readme_says_what_it_is() -> None:
    links = [GALAXY.get(k) for k in ("repository", "documentation", "homepage", "issues")]
    assert all(links), "galaxy.yml needs repository, documentation, homepage and issues"
    hosts = {urlsplit(str(link)).hostname or "" for link in links}
    assert len(hosts) == 1, f"links point at several hosts: {sorted(hosts)}"
    if hosts.pop().endswith(".invalid"):  # RFC 2606: the project home is not public yet
        assert "not public yet" in README


def test_readme_lists_every_role_and_plugin() -> None:
    names = {role.name for role in all_roles()}
    for kind in ("modules", "filter", "test"):
        names |= {p.stem for p in (COLLECTION / "plugins" / kind).glob("*.py")}
    missing = sorted(n for n in names if f"`{n}`" not in README and f".{n}`" not in README)
    assert not missing, f"README.md does not list: {missing}"


def test_every_sanity_ignore_entry_gives_its_reason() -> None:
    for path in (COLLECTION / "tests" / "sanity").glob("ignore-*.txt"):
        for line in filter(None, path.read_text().splitlines()):
            entry, _, reason = line.partition(" # ")
            assert len(entry.split()) == 2 and reason.strip(), f"{path.name}: {line!r}"
