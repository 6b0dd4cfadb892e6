"""Helpers to read a role's documented interface (argument_specs, defaults, README)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.ansible_env import REPO

COLLECTION = REPO / "collections" / "ansible_collections" / "chutes" / "miner"
ROLES = COLLECTION / "roles"
BEGIN = "<!-- BEGIN_ANSIBLE_DOCS -->"
END = "<!-- END_ANSIBLE_DOCS -->"


@dataclass(frozen=True)
class Role:
    name: str
    path: Path

    def argument_specs(self) -> dict[str, Any]:
        data = yaml.safe_load((self.path / "meta" / "argument_specs.yml").read_text())
        specs: dict[str, Any] = data["argument_specs"]
        return specs

    def main_options(self) -> dict[str, Any]:
        options: dict[str, Any] = self.argument_specs()["main"].get("options") or {}
        return options

    def defaults(self) -> dict[str, Any]:
        path = self.path / "defaults" / "main.yml"
        if not path.exists():
            return {}
        return yaml.safe_load(path.read_text()) or {}

    def readme_rows(self) -> list[str]:
        """Variable names of the README table between the BEGIN/END markers, in order."""
        text = (self.path / "README.md").read_text()
        if BEGIN not in text or END not in text:
            return []
        block = text.split(BEGIN, 1)[1].split(END, 1)[0]
        rows = []
        for line in block.splitlines():
            match = re.match(r"^\|\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s*\|", line)
            if match and match.group(1) != "Variable":
                rows.append(match.group(1))
        return rows


def all_roles() -> list[Role]:
    if not ROLES.is_dir():
        return []
    return [Role(p.name, p) for p in sorted(ROLES.iterdir()) if (p / "tasks").is_dir()]
