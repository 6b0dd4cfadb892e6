"""chutes.miner.k8s_binaries_plan: every input problem at once (English and Chinese), and the
derived addresses when there is none."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.chutes.miner.plugins.filter.k8s_binaries_plan import k8s_binaries_plan

NODES = ("cpu-0", "gpu-0", "gpu-1")


def settings(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "k8s_binaries_kubernetes_version": "1.34.4",
        "k8s_binaries_etcd_version": "3.6.16",
        "k8s_binaries_containerd_version": "2.2.9",
        "k8s_binaries_runc_version": "1.4.3",
        "k8s_binaries_cni_plugins_version": "1.9.1",
        "k8s_binaries_checksums": {},
        "k8s_binaries_pod_cidr": "10.1.0.0/16",
        "k8s_binaries_node_cidr_mask": 24,
        "k8s_binaries_service_cidr": "10.152.183.0/24",
        "k8s_binaries_node_network": "192.168.0.0/20",
        "k8s_binaries_cluster_dns": "",
        "k8s_binaries_apiserver_port": 6443,
        "k8s_binaries_cgroup_driver": "systemd",
        "k8s_binaries_kubelet_fail_swap_on": True,
        "k8s_binaries_load_kernel_modules": True,
        "k8s_binaries_drain_timeout": 300,
        "k8s_binaries_ready_timeout": 300,
        "k8s_binaries_cert_valid_days": 3650,
        "k8s_binaries_pod_mtu": 1330,
        "k8s_binaries_kube_proxy_conntrack_max_per_core": 32768,
        "k8s_binaries_remove_nodes": [],
        "k8s_binaries_coredns": True,
        "k8s_binaries_coredns_image": "registry.k8s.io/coredns/coredns:v1.13.2",
        "k8s_binaries_coredns_replicas": 2,
    }
    base.update(over)
    return base


def nodes(**over: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for i, name in enumerate(NODES, 1):
        out[name] = {
            "node_ip": f"192.168.0.{i}",
            "external_ip": f"203.0.113.{i}",
            "addresses": [f"10.89.77.{10 + i}", f"192.168.0.{i}"],
        }
        out[name].update(over.get(name.replace("-", "_"), {}))
    return out


def plan(s: dict[str, Any], n: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    return k8s_binaries_plan(s, n if n is not None else nodes(), ["cpu-0"], list(NODES))


def english(p: dict[str, Any]) -> list[str]:
    assert all(problem["zh"] for problem in p["problems"]), p
    return [f"[{problem['host']}] {problem['en']}" for problem in p["problems"]]


def test_defaults_pass_and_derive_the_addresses() -> None:
    p = plan(settings())
    assert p["problems"] == []
    assert p["service_ip"] == "10.152.183.1"
    assert p["cluster_dns"] == "10.152.183.10"
    assert p["vtep_mac"] == {
        "cpu-0": "02:c5:c0:a8:00:01",
        "gpu-0": "02:c5:c0:a8:00:02",
        "gpu-1": "02:c5:c0:a8:00:03",
    }
    assert (
        plan(settings(k8s_binaries_cluster_dns="10.152.183.53"))["cluster_dns"] == "10.152.183.53"
    )
    # Without CoreDNS its image is not used, so not checked.
    assert (
        plan(settings(k8s_binaries_coredns=False, k8s_binaries_coredns_image=""))["problems"] == []
    )


def test_overlapping_networks_are_all_reported_at_once() -> None:
    """Pod inside the WireGuard network, service inside the pod network, and a host address
    inside the pod network: three problems in one answer."""
    p = plan(
        settings(
            k8s_binaries_pod_cidr="192.168.0.0/16",
            k8s_binaries_service_cidr="192.168.128.0/24",
        ),
        nodes(gpu_1={"addresses": ["192.168.0.3", "10.244.0.5"]}),
    )
    got = english(p)
    assert any(
        "k8s_binaries_pod_cidr 192.168.0.0/16 overlaps k8s_binaries_service_cidr" in g for g in got
    )
    assert any(
        "k8s_binaries_pod_cidr 192.168.0.0/16 overlaps k8s_binaries_node_network" in g for g in got
    )
    assert any(
        g.startswith(
            "[cpu-0] k8s_binaries_pod_cidr 192.168.0.0/16 contains this host's address 192.168.0.1"
        )
        for g in got
    )
    assert "service_ip" not in p


def test_host_addresses_inside_the_service_network() -> None:
    got = english(plan(settings(), nodes(gpu_0={"external_ip": "10.152.183.7"})))
    assert got == [
        "[gpu-0] k8s_binaries_service_cidr 10.152.183.0/24 contains this host's address"
        " 10.152.183.7; pod and service networks must not overlap the hosts' own addresses."
    ]


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        (
            {"k8s_binaries_pod_cidr": "10.1.0.1/16"},
            "k8s_binaries_pod_cidr='10.1.0.1/16' is not an IPv4 network",
        ),
        ({"k8s_binaries_service_cidr": "10.0.0.0/8"}, "prefix of 12-28"),
        ({"k8s_binaries_node_cidr_mask": 16}, "must be longer than the pod network"),
        (
            {"k8s_binaries_node_cidr_mask": "24"},
            "k8s_binaries_node_cidr_mask='24' must be a whole number",
        ),
        (
            {"k8s_binaries_pod_cidr": "10.1.0.0/23"},
            "holds 2 node subnets of /24, fewer than the 3 nodes",
        ),
        ({"k8s_binaries_kubernetes_version": "v1.34.4"}, "is not a release version like 1.34.4"),
        (
            {"k8s_binaries_checksums": {"kubelet": "abc"}},
            "k8s_binaries_checksums: 'kubelet': 'abc'",
        ),
        ({"k8s_binaries_checksums": {"helm": "0" * 64}}, "k8s_binaries_checksums: 'helm'"),
        ({"k8s_binaries_apiserver_port": 10250}, "is the port of kubelet"),
        ({"k8s_binaries_cgroup_driver": "cgroup"}, "must be systemd or cgroupfs"),
        ({"k8s_binaries_kubelet_fail_swap_on": "no"}, "must be true or false, got 'no'"),
        (
            {"k8s_binaries_pod_mtu": 500},
            "k8s_binaries_pod_mtu=500 must be a whole number of at least 576",
        ),
        ({"k8s_binaries_kube_proxy_conntrack_max_per_core": -1}, "must be 0"),
        ({"k8s_binaries_remove_nodes": ["gpu-1"]}, "names gpu-1, which are still in the inventory"),
        ({"k8s_binaries_remove_nodes": "gpu-2"}, "must be a list of node names"),
        ({"k8s_binaries_coredns": "yes"}, "k8s_binaries_coredns must be true or false"),
        ({"k8s_binaries_coredns_replicas": 0}, "k8s_binaries_coredns_replicas=0 must be a whole"),
        (
            {"k8s_binaries_coredns_image": "registry.k8s.io/coredns/coredns"},
            "is not an image reference pinned by tag or digest",
        ),
        ({"k8s_binaries_coredns_image": ""}, "k8s_binaries_coredns_image='' is not an image"),
    ],
)
def test_each_bad_input_is_named(over: dict[str, Any], fragment: str) -> None:
    got = english(plan(settings(**over)))
    assert any(fragment in g for g in got), got


def test_node_address_must_be_on_the_host() -> None:
    got = english(
        plan(settings(), nodes(gpu_0={"addresses": ["10.89.77.11"]}, gpu_1={"node_ip": ""}))
    )
    assert got[0].startswith(
        "[gpu-0] k8s_binaries_node_ip 192.168.0.2 is not an address of this host"
    )
    assert "run the WireGuard step first" in got[0]
    assert got[1].startswith("[gpu-1] k8s_binaries_node_ip='' is not an IPv4 address")
    # A check run on new hosts: WireGuard is not up yet, so the address cannot be there.
    checking = nodes(gpu_0={"addresses": ["10.89.77.11"], "check_mode": True})
    assert plan(settings(), checking)["problems"] == []
    # ... but every other check of that node still runs.
    checking["gpu-0"]["external_ip"] = "10.152.183.9"
    assert "[gpu-0] k8s_binaries_service_cidr" in english(plan(settings(), checking))[0]


def test_groups_and_play() -> None:
    p = k8s_binaries_plan(settings(), nodes(), ["cpu-0", "gpu-0"], ["cpu-0", "gpu-0"])
    got = english(p)
    assert got[0] == "[all] the primary group must hold exactly one host (has 2)."
    assert "missing: gpu-1" in got[1] and "--limit" in got[1]
