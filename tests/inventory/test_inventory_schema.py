"""The schema table against the roles: every role input is covered with the type its
argument_specs declare, every role default passes its own schema, and the generic checks
(types, ranges, formats) behave at their edges."""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import pytest
import yaml
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_schema import (
    Bool,
    Float,
    Int,
    ListOf,
    Record,
    Str,
    is_host_port,
    is_registry,
    plain,
    show,
)
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_vars import (
    DERIVED,
    ROLES,
    role_options,
    variables,
)

from tests.inventory.conftest import GPUS

TABLE = variables(GPUS)
OPTIONS = role_options()
# argument_specs types a table entry may implement (a path is a str with a format).
SAME_TYPE = {"path": {"path", "str"}, "str": {"str", "path"}}


def test_every_role_input_is_checked() -> None:
    assert OPTIONS, "no role argument_specs found"
    assert set(OPTIONS) <= set(TABLE)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_table_type_matches_argument_specs(name: str) -> None:
    role, option = OPTIONS[name]
    declared = str(option.get("type", "raw"))
    implemented = TABLE[name].spec.ansible_type
    assert implemented in SAME_TYPE.get(declared, {declared}), (role, name, declared, implemented)


def _defaults() -> list[tuple[str, str, Any]]:
    out = []
    for path in sorted(ROLES.glob("*/defaults/main.yml")):
        if not (path.parent.parent / "meta/argument_specs.yml").is_file():
            continue  # a role still being written: tests/collection insists on its specs
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            if "{{" not in str(value) and name not in DERIVED:
                out.append((path.parent.parent.name, name, value))
    return out


@pytest.mark.parametrize(("role", "name", "value"), _defaults(), ids=lambda v: str(v)[:40])
def test_role_defaults_pass_their_schema(role: str, name: str, value: Any) -> None:
    parsed = TABLE[name].spec.parse(value, name)
    assert parsed.ok, (role, name, parsed.findings)


def test_cluster_defaults_pass_their_schema() -> None:
    for var in TABLE.values():
        if var.cluster and var.default is not None:
            assert var.spec.parse(var.default, var.name).ok, var.name


@pytest.mark.parametrize(
    ("value", "ok"),
    [(True, True), (False, True), ("true", False), ("yes", False), (1, False), (None, False)],
)
def test_bool_is_a_real_boolean(value: Any, ok: bool) -> None:
    assert Bool().parse(value, "x").ok is ok


@pytest.mark.parametrize(
    ("value", "parsed"),
    [(1, 1), (65535, 65535), ("51820", 51820), (" 7 ", 7), ("+3", 3)],
)
def test_int_accepts_numbers_and_decimal_strings(value: Any, parsed: int) -> None:
    result = Int(1, 65535).parse(value, "port")
    assert result.ok and result.value == parsed


@pytest.mark.parametrize(
    ("value", "code"),
    [(0, "out_of_range"), (65536, "out_of_range"), ("0x10", "wrong_type"), (True, "wrong_type"),
     (8.0, "wrong_type"), ("9" * 30, "wrong_type"), ([1], "wrong_type"),
     (10**5000, "out_of_range")],
    ids=lambda v: show(v)[:20],
)  # fmt: skip
def test_int_refuses(value: Any, code: str) -> None:
    result = Int(1, 65535).parse(value, "port")
    assert not result.ok and result.findings[0].code == code


def test_float_refuses_nan_and_infinity() -> None:
    assert Float(0, 10).parse(2, "x").ok
    assert not Float(0, 10).parse(float("nan"), "x").ok
    assert not Float(0, 10).parse(float("inf"), "x").ok
    assert not Float(0, 10).parse("ten", "x").ok


def test_list_reports_each_bad_item_with_its_index() -> None:
    result = ListOf(Int(1, 5)).parse([1, 9, "x", 3], "ports")
    assert [(f.path, f.code) for f in result.findings] == [
        ("ports[1]", "out_of_range"),
        ("ports[2]", "wrong_type"),
    ]


def test_record_reports_missing_and_unknown_keys() -> None:
    spec = Record({"a": Int(0, 1), "b": Str()}, required=("a", "b"))
    result = spec.parse({"a": 1, "c": 2}, "v[0]")
    assert sorted((f.path, f.code) for f in result.findings) == [
        ("v[0].'c'", "unknown_key"),
        ("v[0].b", "missing"),
    ]


def test_networks_are_normalised() -> None:
    parsed = TABLE["wireguard_network"].spec.parse("10.8.0.0/24", "wireguard_network")
    assert parsed.value == ipaddress.IPv4Network("10.8.0.0/24")
    address = TABLE["wireguard_address"].spec.parse("10.8.0.3", "wireguard_address")
    assert address.value == ipaddress.IPv4Address("10.8.0.3")
    assert not TABLE["wireguard_address"].spec.parse("010.8.0.3", "x").ok  # leading zeros


@pytest.mark.parametrize(
    ("text", "ok"),
    [("registry.chutes.ai", True), ("10.89.77.2:5000", True), ("reg:0", False),
     ("https://registry.chutes.ai", False), ("reg/path", False), ("reg:65536", False)],
)  # fmt: skip
def test_registry_host_port(text: str, ok: bool) -> None:
    assert is_host_port(text) is ok


@pytest.mark.parametrize(
    ("text", "ok"),
    [("registry.chutes.ai", True), ("https://registry.chutes.ai", True),
     ("http://10.89.77.2:5000", True), ("https://reg/path", False), ("ftp://reg", False),
     ("http://", False), ("https://reg:0", False), ("HTTP://reg", False), ("reg/path", False)],
)  # fmt: skip
def test_validator_registry(text: str, ok: bool) -> None:
    assert is_registry(text) is ok


def test_show_and_plain_survive_odd_values() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert show(10**5000) == "<a number>"
    assert len(show("x" * 1000)) == 60
    assert show("a\nb") == "'a\\nb'"
    assert plain({("a",): 1, datetime.date(2024, 1, 1): [loop]})  # no recursion error
    assert plain({1: {2: 3}}) == {1: {2: 3}}
