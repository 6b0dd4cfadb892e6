"""Regenerate the variables table of role READMEs from meta/argument_specs.yml.

Usage: python -m tests.collection.readme_table [role ...]   (default: every role)
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.collection.roles import BEGIN, END, Role, all_roles


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render(role: Role) -> str:
    lines = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    defaults = role.defaults()
    for name, option in role.main_options().items():
        if option.get("required"):
            default = "required"
        elif name in defaults:
            default = f"`{_cell(defaults[name])}`"
        else:
            default = "-"
        description = option.get("description", "")
        if isinstance(description, list):
            description = " ".join(description)
        lines.append(
            f"| `{name}` | {option.get('type', 'str')} | {default} | {_cell(description)} |"
        )
    return "\n".join(lines)


def update(role: Role) -> bool:
    path = role.path / "README.md"
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render(role)}\n{END}{tail}"
    if new != text:
        path.write_text(new)
        return True
    return False


def main(argv: list[str]) -> int:
    wanted = set(argv)
    for role in all_roles():
        if wanted and role.name not in wanted:
            continue
        if update(role):
            sys.stdout.write(f"updated {role.name}/README.md\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
