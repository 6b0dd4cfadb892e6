"""Unit tests of the filters behind chutes.miner.preflight's host checks."""

from __future__ import annotations

from ansible_collections.chutes.miner.plugins.filter.busy_ports import busy_ports
from ansible_collections.chutes.miner.plugins.filter.path_parents import path_parents
from ansible_collections.chutes.miner.plugins.filter.preflight_row import preflight_row
from ansible_collections.chutes.miner.plugins.filter.sysctl_after import sysctl_after


def test_path_parents() -> None:
    assert path_parents("/var/snap") == ["/", "/var", "/var/snap"]
    assert path_parents("/") == ["/"]
    assert path_parents("/data//snap/") == ["/", "/data", "/data/snap"]


def test_busy_ports_ignores_the_cluster_and_kernel_sockets() -> None:
    listening = {
        "tcp": [
            {"port": 25000, "name": "python3", "pid": 118},
            {"port": 25000, "name": "python3", "pid": 118},  # IPv4 and IPv6: reported once
            {"port": 16443, "name": "kubelite", "pid": 9},
            {"port": 22, "name": "sshd", "pid": 1},
        ],
        "udp": [{"port": 51820, "name": "", "pid": 0}, {"port": 4789, "name": "socat", "pid": 7}],
    }
    ports = ["25000/tcp", "16443/tcp", "51820/udp", "4789/udp", "30500/tcp"]
    assert busy_ports(listening, ports, ["kubelite"]) == [
        "25000/tcp held by python3[118]",
        "4789/udp held by socat[7]",
    ]


def test_busy_ports_ignores_the_clusters_own_pods_only() -> None:
    """On a rerun the registry proxy (nginx in a host-network pod) holds its port: allowed by
    pid, never by name, so an operator's own nginx on that port is still reported."""
    listening = {
        "tcp": [
            {"port": 30500, "name": "nginx", "pid": 5775},
            {"port": 30500, "name": "nginx", "pid": 5788},
            {"port": 32000, "name": "nginx", "pid": 812},
        ]
    }
    ports = ["30500/tcp", "32000/tcp"]
    assert busy_ports(listening, ports, [], [5775, "5788"]) == ["32000/tcp held by nginx[812]"]
    assert busy_ports(listening, ports, []) == [
        "30500/tcp held by nginx[5775]",
        "30500/tcp held by nginx[5788]",
        "32000/tcp held by nginx[812]",
    ]


def test_sysctl_after_keeps_files_that_win_over_the_dropin() -> None:
    files = [
        "/etc/sysctl.d/10-network.conf",
        "/etc/sysctl.d/60-chutes-miner.conf",
        "/usr/lib/sysctl.d/99-no-forward.conf",
        "/etc/sysctl.d/61-x.conf",
        "/etc/sysctl.conf",
    ]
    assert sysctl_after(files, "60-chutes-miner.conf") == [
        "/etc/sysctl.conf",
        "/etc/sysctl.d/61-x.conf",
        "/usr/lib/sysctl.d/99-no-forward.conf",
    ]


def test_preflight_row_with_fix() -> None:
    row = {"check": "ports", "ok": False, "detail": "25000/tcp held by python3[1] "}
    fixes = {"ports": {"en": "stop it", "zh": "停止它"}}
    assert preflight_row(row) == "FAIL ports       25000/tcp held by python3[1]"
    assert preflight_row(row, fixes).splitlines()[1:] == ["     fix: stop it", "     修复: 停止它"]
    assert preflight_row({"check": "os", "ok": True, "detail": "Debian 12"}).startswith("ok   os")
