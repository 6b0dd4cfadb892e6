"""Every role documents its inputs once: argument_specs is the source; defaults and the
README table must agree with it (style.md 3.1.2)."""

from __future__ import annotations

import pytest

from tests.collection.roles import BEGIN, END, Role, all_roles

ROLES = all_roles()
IDS = [r.name for r in ROLES]


def test_collection_has_roles() -> None:
    assert ROLES, "no roles found under the collection"


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_role_has_documented_interface(role: Role) -> None:
    for rel in ("README.md", "meta/main.yml", "meta/argument_specs.yml", "tasks/main.yml"):
        assert (role.path / rel).is_file(), f"{role.name}: missing {rel}"
    readme = (role.path / "README.md").read_text()
    assert BEGIN in readme and END in readme, f"{role.name}: README lacks the variables block"


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_defaults_match_argument_specs(role: Role) -> None:
    options = role.main_options()
    documented = {k for k, v in options.items() if not v.get("required", False)}
    defaults = set(role.defaults())
    assert defaults - set(options) == set(), f"{role.name}: defaults not in argument_specs"
    assert documented - defaults == set(), f"{role.name}: optional inputs without a default"


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_every_option_has_type_and_description(role: Role) -> None:
    for entry, spec in role.argument_specs().items():
        for name, option in (spec.get("options") or {}).items():
            assert option.get("description"), f"{role.name}.{entry}: {name} has no description"
            assert option.get("type"), f"{role.name}.{entry}: {name} has no type"


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_readme_table_matches_argument_specs(role: Role) -> None:
    assert role.readme_rows() == list(role.main_options()), (
        f"{role.name}: README variables table differs from meta/argument_specs.yml "
        "(regenerate it with tests/collection/readme_table.py)"
    )
