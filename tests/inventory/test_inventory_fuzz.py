"""Property tests: whatever value of whatever type lands in any inventory variable, validation
answers with bilingual problems that name a host and a variable, and never raises.

Values are what YAML and Jinja can produce: null, booleans, integers far beyond 64 bits,
floats with NaN and infinities, strings (unicode, control characters, numbers and addresses
in text), dates, binary data, and lists and mappings of all of these, nested.
"""

from __future__ import annotations

import datetime
import re
from typing import Any
from unittest import mock

from ansible_collections.chutes.miner.plugins.plugin_utils import inventory_rules
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_rules import (
    ALL,
    FLAGS,
    Result,
)
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_vars import variables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.inventory.conftest import GPUS, UPSTREAM_NAMES, Inv, valid
from tests.inventory.conftest import check as _check

CJK = re.compile(r"[\u4e00-\u9fff]")
TEXTS = st.sampled_from(
    ["", " ", "auto", "true", "no", "30500", "1e3", "192.168.0.2", "192.168.0.0/20",
     "10.1.0.0/16", "::1", "0.0.0.0", "https://x", "ws://", "{{ undefined }}", "h200", "-1",
     "ssh-ed25519 AAAA", "chutes_primary", "/", "a" * 300, "\x00", "名字"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    TEXTS,
    st.dates(),
    st.datetimes(min_value=datetime.datetime(1, 1, 1)),
    st.binary(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), TEXTS), inner, max_size=4),
    ),
    max_leaves=12,
)
NAMES = sorted({*variables(GPUS), *FLAGS, *UPSTREAM_NAMES, "ansible_connection"})
HOSTS = ("cpu-0", "gpu-0", "gpu-1", ALL)
FUZZ = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def check(inv: Inv) -> Result:
    """Validate ``inv``; fail when a message template asked for a field nobody gave it.

    The catalog leaves an unfilled field as ``{name}``; looking for that pattern in the text
    would also match host names and values the fuzzer writes with braces, so the misses are
    recorded where they happen instead.
    """
    missed: list[str] = []

    def record(fields: dict[str, str], key: str) -> str:
        missed.append(key)
        return "{" + key + "}"

    with mock.patch.object(inventory_rules._Fields, "__missing__", record):
        result = _check(inv)
    assert not missed, f"message fields left unfilled: {sorted(set(missed))}"
    return result


def assert_reported_well(result: Result) -> None:
    for p in result.problems + result.notices:
        assert p.code != "rule_failed", p.en  # a rule met a value it did not expect
        assert p.host, p
        assert p.en.strip() and p.fix_en.strip(), p
        assert CJK.search(p.zh) and CJK.search(p.fix_zh), p


def _set(inv: Inv, host: str, name: str, value: Any) -> None:
    (inv.cluster if host == ALL else inv.host(host))[name] = value


@FUZZ
@given(name=st.sampled_from(NAMES), host=st.sampled_from(HOSTS), value=VALUES)
def test_any_value_in_any_variable(name: str, host: str, value: Any) -> None:
    inv = valid()
    _set(inv, host, name, value)
    result = check(inv)
    assert_reported_well(result)


@FUZZ
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(NAMES), st.sampled_from(HOSTS), VALUES), min_size=2, max_size=8
    )
)
def test_many_wrong_values_at_once(changes: list[tuple[str, str, Any]]) -> None:
    inv = valid()
    for name, host, value in changes:
        _set(inv, host, name, value)
    result = check(inv)
    assert_reported_well(result)


HOST_NAMES = st.one_of(
    st.sampled_from(["cpu-0", "gpu-0", "GPU_1", "a" * 70, "x.y", "-bad", "名字"]),
    st.text(min_size=1, max_size=20),
)
GROUPS = st.lists(st.sampled_from(["chutes_primary", "chutes_gpu", "chutes_workers"]), max_size=3)


@FUZZ
@given(
    hosts=st.dictionaries(
        HOST_NAMES,
        st.tuples(GROUPS, st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=6)),
        max_size=6,
    ),
    cluster=st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=6),
)
def test_random_inventories(
    hosts: dict[str, tuple[list[str], dict[str, Any]]], cluster: dict[str, Any]
) -> None:
    inv = Inv(cluster=cluster)
    for host, (groups, host_vars) in hosts.items():
        inv.hosts[host] = host_vars
        for group in groups:
            inv.groups.setdefault(group, []).append(host)
    result = check(inv)
    assert_reported_well(result)
    assert set(result.primary) | set(result.gpu) <= set(result.hosts)


def test_huge_and_recursive_values_are_shown_short() -> None:
    loop: list[Any] = []
    loop.append(loop)  # YAML anchors can build a list that contains itself
    inv = valid()
    inv.host("gpu-0")["wireguard_port"] = 10**5000
    inv.host("gpu-1")["wireguard_mtu"] = loop
    result = check(inv)
    assert_reported_well(result)
    assert {(p.host, p.var) for p in result.problems} == {
        ("gpu-0", "wireguard_port"),
        ("gpu-1", "wireguard_mtu"),
    }
    assert all(len(p.en) < 400 for p in result.problems)


RESOURCES = st.sampled_from(
    ["apt", "cuda_apt", "nct_apt", "pypi", "registries", "files", "k8s_binaries", "huggingface",
     "ntp", "dns", "snap", "bogus"]
)  # fmt: skip
CANDIDATES = st.one_of(
    VALUES,
    st.lists(st.one_of(TEXTS, st.fixed_dictionaries({}, optional={"url": VALUES, "id": VALUES}))),
)


@FUZZ
@given(
    profile=st.sampled_from(["custom", "airgap", "tuna", "auto", "none"]),
    custom=st.dictionaries(RESOURCES, CANDIDATES, max_size=3),
    overrides=st.dictionaries(
        RESOURCES, st.one_of(VALUES, st.fixed_dictionaries({"candidates": CANDIDATES})), max_size=3
    ),
)
def test_any_mirror_inputs(profile: str, custom: Any, overrides: Any) -> None:
    """The mirrors role's own plan builder runs on these: whatever shape, a problem per host."""
    inv = valid()
    inv.cluster.update(
        mirrors_profile=profile, mirrors_custom_profile=custom, mirrors_overrides=overrides
    )
    result = check(inv)
    assert_reported_well(result)
    assert all(p.var.startswith("mirrors_") for p in result.problems), result.problems


def _undefined() -> list[Any]:
    """What a failed template is inside ansible-core 2.19's lazy templating: a marker object
    derived from Jinja's Undefined, not an exception (Ansible's own markers need a live
    template context; test_validate_templates runs them through ansible-playbook)."""
    from jinja2 import ChainableUndefined, StrictUndefined, Undefined

    return [Undefined(name="foo"), StrictUndefined(name="bar"), ChainableUndefined(name="baz")]


def test_failed_templates_are_unresolvable_wherever_they_sit() -> None:
    for marker in _undefined():
        inv = valid()
        inv.host("gpu-0")["wireguard_port"] = marker
        inv.host("gpu-1")["base_admin_ssh_keys"] = ["ssh-ed25519 AAAA", marker]
        inv.cluster["chutes_validators"] = [{"hotkey": {"x": [marker]}}]
        result = check(inv)
        assert_reported_well(result)
        assert {(p.code, p.host, p.var) for p in result.problems} == {
            ("unresolvable", "gpu-0", "wireguard_port"),
            ("unresolvable", "gpu-1", "base_admin_ssh_keys"),
            *(("unresolvable", h, "chutes_validators") for h in ("cpu-0", "gpu-0", "gpu-1")),
        }, [p.en for p in result.problems]
        assert not any("Marker" in p.en or "Undefined" in p.en for p in result.problems)
