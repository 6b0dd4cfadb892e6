"""module_utils/wireguard_verify.py: the matrix and the cause named for each failing pair."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.chutes.miner.plugins.filter.wireguard_report import wireguard_report
from ansible_collections.chutes.miner.plugins.module_utils.wireguard_verify import report, rows

NODES = ["cpu-0", "gpu-0", "gpu-1"]


def _net(**endpoints: str) -> dict[str, Any]:
    net = {}
    for i, n in enumerate(NODES):
        endpoint = endpoints.get(n.replace("-", "_"), f"203.0.113.{i + 1}")
        net[n] = {"address": f"192.168.0.{i + 1}", "public_key": f"K{i}=", "endpoint": endpoint}
        net[n]["port"] = 51820
    return net


def _probe(net: dict[str, Any], me: str, ok: tuple[str, ...], hs: dict[str, int]) -> list[str]:
    lines = [f"ping {net[p]['address']} {'ok' if p in ok else 'fail'}" for p in NODES if p != me]
    lines.append("now 1000")
    lines += [f"hs {net[p]['public_key']} {ts}" for p, ts in hs.items()]
    return lines


def _healthy(net: dict[str, Any]) -> dict[str, list[str]]:
    """A hub network: the hub has every node as a peer, each worker only the hub."""
    return {
        "cpu-0": _probe(net, "cpu-0", ("gpu-0", "gpu-1"), {"gpu-0": 990, "gpu-1": 995}),
        "gpu-0": _probe(net, "gpu-0", ("cpu-0", "gpu-1"), {"cpu-0": 990}),
        "gpu-1": _probe(net, "gpu-1", ("cpu-0", "gpu-0"), {"cpu-0": 995}),
    }


def test_a_healthy_hub_network_fails_nothing_and_marks_the_hub_paths() -> None:
    net = _net()
    got = report(NODES, _healthy(net), net, "cpu-0", 300, "wg0")
    assert got["failed"] == []
    assert got["matrix"] == [
        "from \\ to     cpu-0      gpu-0      gpu-1   ",
        "cpu-0           -          ok         ok    ",
        "gpu-0           ok         -         ok*    ",
        "gpu-1           ok        ok*         -     ",
        "* = through the hub cpu-0 / 经中心节点 cpu-0 转发",
    ]


def test_rows_record_via_and_handshake_age() -> None:
    net = _net()
    table = rows(NODES, _healthy(net), net, "cpu-0")
    assert table["gpu-0"] == [
        {
            "peer": "cpu-0",
            "address": "192.168.0.1",
            "via": "cpu-0",
            "ping": True,
            "handshake_age": 10,
        },
        {
            "peer": "gpu-1",
            "address": "192.168.0.3",
            "via": "cpu-0",
            "ping": True,
            "handshake_age": 10,
        },
    ]


def test_a_closed_udp_port_names_the_security_group_in_both_languages() -> None:
    net = _net()
    probes = _healthy(net)
    probes["cpu-0"] = _probe(net, "cpu-0", ("gpu-0",), {"gpu-0": 990})  # gpu-1 never answered
    failed = report(NODES, probes, net, "cpu-0", 300, "wg0")["failed"]
    assert failed[0].startswith("cpu-0 -> gpu-1 (192.168.0.3): no handshake with cpu-0: UDP 51820")
    assert "check the cloud security group and firewall of cpu-0: allow UDP 51820" in failed[0]
    assert "203.0.113.1 的 UDP 51820 端口不通。请先检查 cpu-0 的云安全组和防火墙" in failed[0]


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("nat_peer", "which has no endpoint (behind NAT) and has not dialled in"),
        ("nat_self", "gpu-0 has no endpoint, so it must dial 203.0.113.1:51820"),
        ("stale", "last handshake with cpu-0 400 s ago: the path broke"),
        ("no_forward", "the hub cpu-0 answers but does not forward to gpu-1"),
        ("firewall", "handshake ok but no ping reply: a firewall on wg0"),
    ],
)
def test_each_cause(case: str, needle: str) -> None:
    net = _net()
    probes = _healthy(net)
    if case == "nat_peer":  # the hub is behind NAT and gpu-0 never heard from it
        net = _net(cpu_0="")
        probes["gpu-0"] = _probe(net, "gpu-0", ("gpu-1",), {})
    elif case == "nat_self":  # gpu-0 has no endpoint and has not reached the hub
        net = _net(gpu_0="")
        probes["gpu-0"] = _probe(net, "gpu-0", (), {})
    elif case == "stale":
        probes["gpu-0"] = _probe(net, "gpu-0", ("gpu-1",), {"cpu-0": 600})
    elif case == "no_forward":
        probes["gpu-0"] = _probe(net, "gpu-0", ("cpu-0",), {"cpu-0": 990})
    else:  # handshake fresh, ping lost
        probes["gpu-0"] = _probe(net, "gpu-0", ("gpu-1",), {"cpu-0": 990})
    failed = report(NODES, probes, net, "cpu-0", 300, "wg0")["failed"]
    assert failed and needle in failed[0], failed


def test_a_node_without_probe_output_reaches_nobody() -> None:
    net = _net()
    probes = _healthy(net)
    del probes["gpu-1"]
    got = wireguard_report(NODES, probes, net, "cpu-0", "300", "wg0")
    assert [line.split(":")[0] for line in got["failed"]] == [
        "gpu-1 -> cpu-0 (192.168.0.1)",
        "gpu-1 -> gpu-0 (192.168.0.2)",
    ]
    assert got["matrix"][3].split()[1:] == ["FAIL", "FAIL*", "-"]


def test_garbage_numbers_count_as_zero_like_the_int_filter() -> None:
    net = _net()
    probes = _healthy(net)
    probes["gpu-0"] = ["ping 192.168.0.1 ok", "ping 192.168.0.3 ok", "now x", "hs K0= y"]
    failed = report(NODES, probes, net, "cpu-0", 300, "wg0")["failed"]
    assert failed[0].startswith("gpu-0 -> cpu-0 (192.168.0.1): no handshake with cpu-0")
