# ruff: noqa: E501  (the case table reads best one case per line)
"""Every validation rule and its boundaries, called directly (no host, no ansible-playbook).

Each case mutates a valid inventory and expects exactly the listed problems (code, host,
variable): nothing more, so one run reports every mistake at once and a rule that fires on
valid input fails the suite too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_rules import (
    ALL,
    RULES,
    Context,
)

from tests.inventory.conftest import HOTKEY, SSH_KEY, VALIDATOR, Inv, check, codes, upstream, valid

Mutation = Callable[[Inv], None]


def setting(host: str, **values: Any) -> Mutation:
    def mutate(inv: Inv) -> None:
        target = inv.cluster if host == ALL else inv.host(host)
        for name, value in values.items():
            if value is DELETE:
                target.pop(name, None)
            else:
                target[name] = value

    return mutate


DELETE: Any = object()
NODES = ("cpu-0", "gpu-0", "gpu-1")


def steps(*mutations: Mutation) -> Mutation:
    def mutate(inv: Inv) -> None:
        for mutation in mutations:
            mutation(inv)

    return mutate


def regroup(**groups: list[str]) -> Mutation:
    def mutate(inv: Inv) -> None:
        inv.groups.update(groups)

    return mutate


def rename(old: str, new: str) -> Mutation:
    def mutate(inv: Inv) -> None:
        inv.hosts[new] = inv.hosts.pop(old)
        for members in inv.groups.values():
            members[:] = [new if h == old else h for h in members]

    return mutate


def add_host(name: str, groups: tuple[str, ...] = (), **values: Any) -> Mutation:
    def mutate(inv: Inv) -> None:
        inv.hosts[name] = values
        for group in groups:
            inv.groups.setdefault(group, []).append(name)

    return mutate


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Mutation
    expected: list[tuple[str, str, str]]  # (code, host, variable)


CASES = [
    # Groups.
    Case("no-primary", regroup(chutes_primary=[]), [("no_primary", ALL, ""), ("stray_host", "cpu-0", "wireguard_address")]),
    Case("two-primaries", regroup(chutes_primary=["cpu-0", "gpu-1"]),
         [("many_primaries", ALL, ""), ("primary_is_gpu", "gpu-1", ""), ("primary_is_worker", "gpu-1", "")]),
    Case("no-gpu-worker", regroup(chutes_gpu=[]), [("no_gpu_worker", ALL, "")]),
    Case("stray-gpu-host", add_host("gpu-9", chutes_gpu_model="h200", chutes_gpu_count=8), [("stray_host", "gpu-9", "chutes_gpu_model")]),
    # A near-typo of a collection variable is ignored by Ansible and the default applies.
    Case("typo-of-a-cluster-variable", setting(ALL, wireguard_netwrok="10.9.0.0/24"), [("unknown_variable", h, "wireguard_netwrok") for h in NODES]),
    Case("typo-of-a-host-variable", setting("gpu-0", chutes_gpu_cuont=8, base_admin_ssh_key="k"), [("unknown_variable", "gpu-0", "chutes_gpu_cuont"), ("unknown_variable", "gpu-0", "base_admin_ssh_key")]),
    Case("own-prefix-far-from-any-name-ok", setting(ALL, wireguard_site_note="rack 4", chutes_lab="two edits from chutes_lang"), []),
    Case("other-prefix-ok", setting(ALL, my_wireguard_netwrok="10.9.0.0/24"), []),
    Case("stray-host-upstream-names", add_host("gpu-9", external_ip="8.8.9.9", wireguard_ip="192.168.0.9"), [("stray_host", "gpu-9", "external_ip")]),
    Case("unrelated-host-is-fine", add_host("bastion", ansible_host="10.9.9.9"), []),
    Case("flag-false-in-group", setting("gpu-0", gpu_enabled=False), [("flag_conflict", "gpu-0", "gpu_enabled")]),
    Case("flag-not-bool", setting("gpu-0", is_primary="no"), [("wrong_type", "gpu-0", "is_primary")]),
    # Host names.
    Case("uppercase-host", rename("gpu-1", "GPU_1"), [("bad_node_name", "GPU_1", "")]),
    Case("hostname-64", rename("gpu-1", "g" * 63 + "1"), [("bad_node_name", "g" * 63 + "1", "")]),
    Case("hostname-63-label-ok", rename("gpu-1", "g" * 62 + "1"), []),
    Case("hostname-64-dotted-ok", rename("gpu-1", "g" * 31 + "." + "h" * 32), []),
    Case("hostname-65-dotted", rename("gpu-1", "g" * 32 + "." + "h" * 32), [("hostname_too_long", "g" * 32 + "." + "h" * 32, "")]),
    Case("base-hostname-bad", setting("gpu-1", base_hostname="-gpu"), [("bad_node_name", "gpu-1", "base_hostname")]),
    Case("base-hostname-duplicate", steps(setting("gpu-0", base_hostname="node"), setting("gpu-1", base_hostname="node")),
         [("duplicate_hostname", "gpu-0, gpu-1", "base_hostname")]),
    # Connection addresses.
    Case("missing-ansible-host", setting("gpu-0", ansible_host=DELETE), [("missing_ansible_host", "gpu-0", "ansible_host")]),
    Case("local-connection-needs-no-host", setting("gpu-0", ansible_host=DELETE, ansible_connection="local"), []),
    Case("duplicate-ansible-host", setting("gpu-1", ansible_host="10.20.0.11"), [("duplicate_ansible_host", "gpu-0, gpu-1", "ansible_host")]),
    Case("same-address-other-port-ok", steps(*(setting(h, ansible_host="127.0.0.1") for h in NODES), setting("cpu-0", ansible_port=2200), setting("gpu-0", ansible_port=2201), setting("gpu-1", ansible_port=2202)), []),
    # Loopback is the controller itself unless a forwarded port (an SSH tunnel) is given.
    Case("ansible-host-loopback", setting("gpu-0", ansible_host="127.0.0.1"), [("loopback_ansible_host", "gpu-0", "ansible_host")]),
    Case("ansible-host-loopback-port-22", setting("gpu-0", ansible_host="127.1.2.3", ansible_port=22), [("loopback_ansible_host", "gpu-0", "ansible_host")]),
    Case("ansible-host-localhost-name", setting("gpu-0", ansible_host="LocalHost."), [("loopback_ansible_host", "gpu-0", "ansible_host")]),
    Case("ansible-host-loopback-forwarded-ok", setting("gpu-0", ansible_host="127.0.0.1", ansible_port=2222), []),
    Case("ansible-host-loopback-local-ok", setting("gpu-0", ansible_host="127.0.0.1", ansible_connection="local"), []),
    Case("same-address-same-port", steps(*(setting(h, ansible_host="127.0.0.1") for h in NODES), setting("cpu-0", ansible_port=2200), setting("gpu-0", ansible_port=2201), setting("gpu-1", ansible_port=2201)),
         [("duplicate_ansible_host", "gpu-0, gpu-1", "ansible_host")]),
    Case("ansible-port-22-is-the-default", steps(setting("gpu-0", ansible_host="10.20.0.99"), setting("gpu-1", ansible_host="10.20.0.99", ansible_port=22)),
         [("duplicate_ansible_host", "gpu-0, gpu-1", "ansible_host")]),
    Case("ansible-host-names-ignore-case", steps(setting("gpu-0", ansible_host="Node.Example"), setting("gpu-1", ansible_host="node.example")),
         [("duplicate_ansible_host", "gpu-0, gpu-1", "ansible_host")]),
    # A host the rule skips (local, unusable, a name) does not end the checks of the hosts after it.
    Case("local-host-then-bad", steps(setting("cpu-0", ansible_host=DELETE, ansible_connection="local"), setting("gpu-1", ansible_host="0.0.0.0")),
         [("bad_ansible_host", "gpu-1", "ansible_host")]),
    Case("unusable-host-then-bad", steps(setting("cpu-0", ansible_host=["x"]), setting("gpu-1", ansible_host="0.0.0.0")),
         [("wrong_type", "cpu-0", "ansible_host"), ("bad_ansible_host", "gpu-1", "ansible_host")]),
    Case("named-host-then-placeholder", steps(setting("cpu-0", ansible_host="cpu.example"), setting("gpu-1", ansible_host="192.0.2.5")),
         [("placeholder_address", "gpu-1", "ansible_host")]),
    Case("ansible-host-dns-name-ok", setting("gpu-0", ansible_host="gpu-0.example.internal"), []),
    Case("ansible-host-unspecified", setting("gpu-0", ansible_host="0.0.0.0"), [("bad_ansible_host", "gpu-0", "ansible_host")]),
    Case("ansible-host-multicast", setting("gpu-0", ansible_host="224.0.0.1"), [("bad_ansible_host", "gpu-0", "ansible_host")]),
    Case("ansible-host-placeholder", setting("gpu-0", ansible_host="198.51.100.7"), [("placeholder_address", "gpu-0", "ansible_host")]),
    Case("ansible-host-bad-name", setting("gpu-0", ansible_host="gpu 0"), [("bad_format", "gpu-0", "ansible_host")]),
    # External IPs.
    Case("missing-external-ip", setting("gpu-1", chutes_external_ip=DELETE), [("missing_external_ip", "gpu-1", "chutes_external_ip")]),
    Case("external-ip-truncated", setting("gpu-0", chutes_external_ip="203.0.113"), [("bad_format", "gpu-0", "chutes_external_ip")]),
    Case("external-ip-with-prefix", setting("gpu-0", chutes_external_ip="8.8.1.11/32"), [("bad_format", "gpu-0", "chutes_external_ip")]),
    Case("external-ip-private", setting("gpu-0", chutes_external_ip="172.20.1.3"), [("private_external_ip", "gpu-0", "chutes_external_ip")]),
    Case("external-ip-shared-space", setting("gpu-0", chutes_external_ip="100.64.0.5"), [("private_external_ip", "gpu-0", "chutes_external_ip")]),
    Case("external-ip-private-allowed", steps(setting(ALL, chutes_cluster_private=True), setting("gpu-0", chutes_external_ip="172.16.0.5")), []),
    Case("external-ip-loopback-never", steps(setting(ALL, chutes_cluster_private=True), setting("gpu-0", chutes_external_ip="127.0.0.1")),
         [("special_address", "gpu-0", "chutes_external_ip")]),
    Case("external-ip-unspecified", setting("gpu-0", chutes_external_ip="0.0.0.0"), [("special_address", "gpu-0", "chutes_external_ip")]),
    Case("external-ip-link-local", setting("gpu-0", chutes_external_ip="169.254.1.1"), [("special_address", "gpu-0", "chutes_external_ip")]),
    Case("external-ip-broadcast", setting("gpu-0", chutes_external_ip="255.255.255.255"), [("special_address", "gpu-0", "chutes_external_ip")]),
    Case("external-ip-placeholder", setting("gpu-0", chutes_external_ip="203.0.113.9"), [("placeholder_address", "gpu-0", "chutes_external_ip")]),
    Case("duplicate-external-ip", setting("gpu-1", chutes_external_ip="8.8.1.11"), [("duplicate_external_ip", "gpu-0, gpu-1", "chutes_external_ip")]),
    # WireGuard addresses.
    Case("missing-wireguard", setting("gpu-0", wireguard_address=DELETE), [("missing_wireguard_address", "gpu-0", "wireguard_address")]),
    Case("wireguard-outside", setting("gpu-0", wireguard_address="10.8.0.2"), [("wireguard_outside", "gpu-0", "wireguard_address")]),
    Case("wireguard-with-prefix", setting("gpu-0", wireguard_address="192.168.0.2/20"), [("bad_format", "gpu-0", "wireguard_address")]),
    Case("wireguard-network-address", setting("cpu-0", wireguard_address="192.168.0.0"), [("wireguard_reserved", "cpu-0", "wireguard_address")]),
    Case("wireguard-broadcast", setting("cpu-0", wireguard_address="192.168.15.255"), [("wireguard_reserved", "cpu-0", "wireguard_address")]),
    Case("wireguard-first-and-last-ok", steps(setting("cpu-0", wireguard_address="192.168.0.1"), setting("gpu-1", wireguard_address="192.168.15.254")), []),
    Case("duplicate-wireguard", setting("gpu-1", wireguard_address="192.168.0.2"), [("duplicate_wireguard_address", "gpu-0, gpu-1", "wireguard_address")]),
    Case("wireguard-network-host-bits", setting(ALL, wireguard_network="192.168.0.1/20"), [("bad_format", h, "wireguard_network") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("wireguard-network-prefix-31", setting(ALL, wireguard_network="192.168.0.0/31"), [("bad_format", h, "wireguard_network") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("wireguard-network-prefix-30-ok", steps(setting(ALL, wireguard_network="192.168.0.0/30"), setting("cpu-0", wireguard_address="192.168.0.1"),
         setting("gpu-0", wireguard_address="192.168.0.2"), setting("gpu-1", wireguard_address="192.168.0.1")),
         [("duplicate_wireguard_address", "cpu-0, gpu-1", "wireguard_address")]),
    Case("wireguard-network-per-host", setting("gpu-0", wireguard_network="192.168.0.0/16"), [("inconsistent", ALL, "wireguard_network")]),
    Case("wireguard-network-default-on-one-host-ok", setting("gpu-0", wireguard_network="192.168.0.0/20"), []),
    # Address plan.
    Case("wireguard-overlaps-pod-default", steps(setting(ALL, wireguard_network="10.1.0.0/20"), *(setting(h, wireguard_address=f"10.1.0.{i + 1}") for i, h in enumerate(("cpu-0", "gpu-0", "gpu-1")))),
         [("networks_overlap", ALL, "wireguard_network")]),
    Case("wireguard-overlaps-service", setting(ALL, chutes_service_cidr="192.168.8.0/24"), [("networks_overlap", ALL, "wireguard_network")]),
    Case("pod-overlaps-service", setting(ALL, chutes_pod_cidr="10.152.0.0/16"), [("networks_overlap", ALL, "chutes_pod_cidr")]),
    Case("role-pod-cidr-wins", setting(ALL, chutes_pod_cidr="10.42.0.0/16", k8s_binaries_pod_cidr="192.168.8.0/22"), [("networks_overlap", ALL, "wireguard_network")]),
    Case("role-service-cidr-ok", setting(ALL, k8s_binaries_service_cidr="10.96.0.0/12"), []),
    Case("kubernetes-distribution", setting(ALL, chutes_kubernetes="k3s"), [("not_a_choice", h, "chutes_kubernetes") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("kubernetes-per-host", setting("gpu-0", chutes_kubernetes="binaries"), [("inconsistent", ALL, "chutes_kubernetes")]),
    Case("pod-and-service-moved-ok", setting(ALL, chutes_pod_cidr="10.42.0.0/16", chutes_service_cidr="10.43.0.0/16"), []),
    Case("wireguard-contains-host-address", setting("gpu-0", ansible_host="192.168.3.3"), [("network_contains_host", "gpu-0", "wireguard_network")]),
    Case("pod-contains-host-address", setting("gpu-0", ansible_host="10.1.7.7"), [("network_contains_host", "gpu-0", "chutes_pod_cidr")]),
    Case("service-contains-external-ip", steps(setting(ALL, chutes_cluster_private=True), setting("gpu-0", chutes_external_ip="10.152.183.9")),
         [("network_contains_host", "gpu-0", "chutes_service_cidr")]),
    Case("pod-cidr-loopback", setting(ALL, chutes_pod_cidr="127.0.0.0/16"), [("special_network", ALL, "chutes_pod_cidr")]),
    Case("pod-cidr-prefix-28-ok", setting(ALL, chutes_pod_cidr="10.1.0.0/28"), []),
    Case("pod-cidr-prefix-29", setting(ALL, chutes_pod_cidr="10.1.0.0/29"), [("bad_format", h, "chutes_pod_cidr") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("pod-cidr-prefix-7", setting(ALL, chutes_pod_cidr="10.0.0.0/7"), [("bad_format", h, "chutes_pod_cidr") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("service-cidr-prefix-11", setting(ALL, chutes_service_cidr="10.0.0.0/11"), [("bad_format", h, "chutes_service_cidr") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    # WireGuard role inputs.
    Case("wireguard-port-0", setting("gpu-0", wireguard_port=0), [("out_of_range", "gpu-0", "wireguard_port")]),
    Case("wireguard-port-65535-ok", setting("gpu-0", wireguard_port=65535), []),
    Case("wireguard-port-65536", setting("gpu-0", wireguard_port=65536), [("out_of_range", "gpu-0", "wireguard_port")]),
    Case("wireguard-port-string-ok", setting("gpu-0", wireguard_port="51821"), []),
    Case("wireguard-port-not-a-number", setting("gpu-0", wireguard_port="5182o"), [("wrong_type", "gpu-0", "wireguard_port")]),
    Case("wireguard-mtu-1279", setting(ALL, wireguard_mtu=1279), [("out_of_range", h, "wireguard_mtu") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("wireguard-mtu-bounds-ok", steps(setting("cpu-0", wireguard_mtu=1280), setting("gpu-0", wireguard_mtu=8920)), []),
    Case("wireguard-mtu-8921", setting("gpu-0", wireguard_mtu=8921), [("out_of_range", "gpu-0", "wireguard_mtu")]),
    Case("wireguard-topology", setting(ALL, wireguard_topology="star"), [("not_a_choice", h, "wireguard_topology") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("wireguard-interface-16", setting("gpu-0", wireguard_interface="w" * 16), [("bad_format", "gpu-0", "wireguard_interface")]),
    Case("wireguard-userspace-string", setting("gpu-0", wireguard_userspace="true"), [("wrong_type", "gpu-0", "wireguard_userspace")]),
    Case("hub-without-endpoint", setting("cpu-0", wireguard_endpoint=""), [("hub_without_endpoint", "cpu-0", "wireguard_endpoint")]),
    Case("worker-behind-nat-ok", setting("gpu-0", wireguard_endpoint=""), []),
    Case("hub-group-missing", setting(ALL, wireguard_hub_group="hub"), [("group_size", ALL, "wireguard_hub_group")]),
    Case("hub-group-two-hosts", steps(setting(ALL, wireguard_hub_group="hub"), regroup(hub=["cpu-0", "gpu-0"])), [("group_size", ALL, "wireguard_hub_group")]),
    Case("hub-group-one-host-ok", steps(setting(ALL, wireguard_hub_group="hub"), regroup(hub=["cpu-0"])), []),
    Case("hub-group-default-named-ok", setting(ALL, wireguard_hub_group="chutes_primary"), []),
    Case("workers-group-empty", steps(setting(ALL, wireguard_workers_group="wg"), regroup(wg=[])), [("group_size", ALL, "wireguard_workers_group")]),
    Case("workers-group-one-host-ok", steps(setting(ALL, wireguard_workers_group="wg"), regroup(wg=["gpu-0"])), []),
    Case("hub-endpoint-from-external-ip-ok", setting("cpu-0", wireguard_endpoint=DELETE), []),
    Case("hub-with-endpoint-no-external-ip", setting("cpu-0", chutes_external_ip=DELETE, wireguard_endpoint="hub.example"),
         [("missing_external_ip", "cpu-0", "chutes_external_ip")]),
    Case("hub-without-endpoint-or-external-ip", setting("cpu-0", chutes_external_ip=DELETE),
         [("missing_external_ip", "cpu-0", "chutes_external_ip"), ("hub_without_endpoint", "cpu-0", "wireguard_endpoint")]),
    Case("two-node-cluster-hub-without-endpoint", steps(rename("gpu-1", "gone"), regroup(chutes_gpu=["gpu-0"], chutes_workers=["gpu-0"]),
                                                        lambda inv: inv.hosts.pop("gone"), setting("cpu-0", wireguard_endpoint="")),
         [("hub_without_endpoint", "cpu-0", "wireguard_endpoint")]),
    # Ports.
    Case("registry-port-29999", setting(ALL, chutes_registry_port=29999), [("out_of_range", h, "chutes_registry_port") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("ports-at-bounds-ok", setting(ALL, chutes_registry_port=30000, miner_api_node_port=32767), []),
    Case("api-port-32768", setting(ALL, miner_api_node_port=32768), [("out_of_range", h, "miner_api_node_port") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("ports-clash", setting(ALL, miner_api_node_port=30500), [("port_clash", ALL, "miner_api_node_port")]),
    Case("ports-clash-with-default-api-port", setting(ALL, chutes_registry_port=32000), [("port_clash", ALL, "miner_api_node_port")]),
    Case("ports-clash-both-set", setting(ALL, chutes_registry_port=31000, miner_api_node_port=31000), [("port_clash", ALL, "miner_api_node_port")]),
    Case("registry-port-per-host", setting("gpu-0", chutes_registry_port=30501), [("inconsistent", ALL, "chutes_registry_port")]),
    # Validators.
    Case("validators-empty", setting(ALL, chutes_validators=[]), [("empty", h, "chutes_validators") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("hotkey-corrupted", setting(ALL, chutes_validators=[{**VALIDATOR, "hotkey": HOTKEY[:-1] + "R"}]),
         [("bad_format", h, "chutes_validators") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("hotkey-duplicate", setting(ALL, chutes_validators=[VALIDATOR, VALIDATOR]), [("duplicate_hotkey", ALL, "chutes_validators")]),
    Case("validator-api-no-scheme", setting(ALL, chutes_validators=[{**VALIDATOR, "api": "api.chutes.ai"}]),
         [("bad_format", h, "chutes_validators") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("validator-socket-https", setting(ALL, chutes_validators=[{**VALIDATOR, "socket": "https://ws.chutes.ai"}]),
         [("bad_format", h, "chutes_validators") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    # a scheme is allowed (the registry proxy reads it: http:// for a private registry), a path is not
    Case("validator-registry-url", setting(ALL, chutes_validators=[{**VALIDATOR, "registry": "https://registry.chutes.ai"}]), []),
    Case("validator-registry-http", setting(ALL, chutes_validators=[{**VALIDATOR, "registry": "http://10.89.77.2:5000"}]), []),
    Case("validator-registry-path", setting(ALL, chutes_validators=[{**VALIDATOR, "registry": "https://registry.chutes.ai/v2"}]),
         [("bad_format", h, "chutes_validators") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("validator-registry-scheme", setting(ALL, chutes_validators=[{**VALIDATOR, "registry": "oci://registry.chutes.ai"}]),
         [("bad_format", h, "chutes_validators") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("validator-registry-port-ok", setting(ALL, chutes_validators=[{**VALIDATOR, "registry": "10.89.77.2:5000", "api": "http://10.89.77.2:8000", "socket": "ws://10.89.77.2:8000"}]), []),
    Case("validator-missing-socket", setting(ALL, chutes_validators=[{k: v for k, v in VALIDATOR.items() if k != "socket"}]),
         [("missing", h, "chutes_validators") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("validator-unknown-key", setting(ALL, chutes_validators=[{**VALIDATOR, "apikey": "x"}]),
         [("unknown_key", h, "chutes_validators") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("default-validator-bad", setting("gpu-0", chutes_default_validator="5abc"), [("bad_format", "gpu-0", "chutes_default_validator")]),
    # Base.
    Case("no-ssh-keys", setting(ALL, base_admin_ssh_keys=[]), [("empty", h, "base_admin_ssh_keys") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("ssh-keys-unset", setting(ALL, base_admin_ssh_keys=DELETE), [("missing", h, "base_admin_ssh_keys") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("ssh-key-truncated", setting(ALL, base_admin_ssh_keys=[SSH_KEY, "ssh-ed25519"]), [("bad_format", h, "base_admin_ssh_keys") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("ssh-keys-a-string", setting(ALL, base_admin_ssh_keys=SSH_KEY), [("wrong_type", h, "base_admin_ssh_keys") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("admin-root", setting(ALL, base_admin_user="root"), [("bad_format", h, "base_admin_user") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("admin-32-chars-ok", setting(ALL, base_admin_user="a" * 32), []),
    Case("admin-33-chars", setting(ALL, base_admin_user="a" * 33), [("bad_format", h, "base_admin_user") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("nofile-soft-above-hard", setting("gpu-0", base_nofile_soft=50000), [("nofile_order", "gpu-0", "base_nofile_soft")]),
    Case("nofile-equal-ok", setting("gpu-0", base_nofile_soft=40001), []),
    Case("nofile-soft-above-default-hard", setting("gpu-0", base_nofile_soft=40002), [("nofile_order", "gpu-0", "base_nofile_soft")]),
    Case("nofile-hard-below-default-soft", setting("gpu-0", base_nofile_hard=39999), [("nofile_order", "gpu-0", "base_nofile_soft")]),
    Case("nofile-hard-at-default-soft-ok", setting("gpu-0", base_nofile_hard=40000), []),
    Case("nofile-both-set-ok", setting("gpu-0", base_nofile_soft=50000, base_nofile_hard=50000), []),
    Case("unattended-upgrades", setting("gpu-0", base_unattended_upgrades="yes"), [("not_a_choice", "gpu-0", "base_unattended_upgrades")]),
    Case("snap-dir-relative", setting("gpu-0", base_snap_data_dir="data/snap"), [("bad_format", "gpu-0", "base_snap_data_dir")]),
    Case("dns-server-name", setting("gpu-0", base_dns_servers=["dns.example"]), [("bad_format", "gpu-0", "base_dns_servers")]),
    # GPUs.
    Case("unsupported-gpu", setting("gpu-1", chutes_gpu_model="t4"), [("not_a_choice", "gpu-1", "chutes_gpu_model")]),
    Case("missing-gpu-model", setting("gpu-0", chutes_gpu_model=DELETE), [("missing_gpu_model", "gpu-0", "chutes_gpu_model")]),
    Case("missing-gpu-count", setting("gpu-0", chutes_gpu_count=DELETE), [("missing_gpu_count", "gpu-0", "chutes_gpu_count")]),
    Case("auto-gpu-without-count-ok", setting("gpu-0", chutes_gpu_model="auto", chutes_gpu_count=DELETE), []),
    Case("gpu-count-0", setting("gpu-0", chutes_gpu_count=0), [("out_of_range", "gpu-0", "chutes_gpu_count")]),
    Case("gpu-count-bounds-ok", steps(setting("gpu-0", chutes_gpu_count=1), setting("gpu-1", chutes_gpu_count=10)), []),
    Case("gpu-count-11", setting("gpu-0", chutes_gpu_count=11), [("out_of_range", "gpu-0", "chutes_gpu_count")]),
    Case("gpu-count-float", setting("gpu-0", chutes_gpu_count=8.0), [("wrong_type", "gpu-0", "chutes_gpu_count")]),
    # Mirrors and preflight inputs.
    Case("mirrors-profile", setting(ALL, mirrors_profile="tsinghua"), [("not_a_choice", h, "mirrors_profile") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("mirrors-custom-without-profile", setting("gpu-0", mirrors_profile="custom"), [("mirrors_input", "gpu-0", "mirrors_profile")]),
    Case("mirrors-custom-bad-url", setting("gpu-0", mirrors_profile="custom", mirrors_custom_profile={"pypi": ["ftp://mirror/simple/"]}),
         [("mirrors_input", "gpu-0", "mirrors_custom_profile")]),
    # An unknown resource does not hide the other entries' problems; a shape the role cannot
    # read is a problem of that entry; every host with the inputs has the problem.
    Case("mirrors-custom-every-problem", setting(ALL, mirrors_profile="custom", mirrors_custom_profile={"ubuntu": ["x"], "pypi": ["ftp://m/simple/"], "apt": [{}], "dns": ["8.8.8.8"]}),
         [(code, h, var) for h in NODES for code, var in (("mirrors_input", "mirrors_custom_profile"), ("mirrors_input", "mirrors_custom_profile"),
                                                            ("mirrors_unreadable", "mirrors_custom_profile.apt"))]),
    Case("mirrors-overrides-unreadable", setting("gpu-1", mirrors_overrides={"cuda_apt": {"candidates": ["https://m/{1}/"]}}), [("mirrors_unreadable", "gpu-1", "mirrors_overrides.cuda_apt")]),
    Case("mirrors-override-not-a-mapping", setting("gpu-1", mirrors_overrides={"pypi": "http://m/simple/"}), [("mirrors_input", "gpu-1", "mirrors_overrides")]),
    Case("mirrors-custom-ok", setting("gpu-0", mirrors_profile="custom", mirrors_custom_profile={"pypi": ["http://10.0.0.2:8081/simple/"]}), []),
    Case("mirrors-unknown-resource", setting("gpu-0", mirrors_overrides={"aptt": {}}), [("mirrors_input", "gpu-0", "mirrors_overrides")]),
    Case("preflight-port-proto", setting("gpu-0", preflight_ports=["30500/sctp"]), [("bad_format", "gpu-0", "preflight_ports")]),
    Case("preflight-port-65536", setting("gpu-0", preflight_ports=["65536/tcp"]), [("bad_format", "gpu-0", "preflight_ports")]),
    Case("preflight-skew-negative", setting("gpu-0", preflight_clock_max_skew_s=-1), [("out_of_range", "gpu-0", "preflight_clock_max_skew_s")]),
    Case("preflight-skew-nan", setting("gpu-0", preflight_clock_max_skew_s=float("nan")), [("out_of_range", "gpu-0", "preflight_clock_max_skew_s")]),
    Case("language", setting(ALL, chutes_lang="fr"), [("wrong_type", h, "chutes_lang") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("language-list-ok", setting(ALL, chutes_lang=["zh", "en"]), []),
    # Templates that fail.
    Case("unresolvable", setting("gpu-0", wireguard_address=Exception("'undefined_var' is undefined")), [("unresolvable", "gpu-0", "wireguard_address")]),
    # Several unrelated mistakes: every one of them comes back from one run.
    Case("combination", steps(regroup(chutes_primary=[]), setting(ALL, chutes_validators=[{**VALIDATOR, "hotkey": "x"}]),
                              setting("gpu-1", wireguard_address="192.168.0.2", chutes_gpu_model="t4", wireguard_port=[1])),
         [("no_primary", ALL, ""), ("stray_host", "cpu-0", "wireguard_address"),
          ("duplicate_wireguard_address", "gpu-0, gpu-1", "wireguard_address"),
          ("not_a_choice", "gpu-1", "chutes_gpu_model"), ("wrong_type", "gpu-1", "wireguard_port"),
          *(("bad_format", h, "chutes_validators") for h in ("gpu-0", "gpu-1"))]),
]  # fmt: skip


class _Failing(dict[str, Any]):
    """A host's variables where some values raise when read (a failed Jinja template)."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, Exception):
            raise value
        return value


def _run(inv: Inv) -> Any:
    from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_rules import validate

    from tests.inventory.conftest import GPUS, MIRRORS, UPSTREAM_NAMES

    hostvars = {h: _Failing(v) for h, v in inv.hostvars().items()}
    return validate(hostvars, inv.group_map(), GPUS, upstream_names=UPSTREAM_NAMES, mirrors=MIRRORS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(case: Case) -> None:
    inv = valid()
    case.mutate(inv)
    result = _run(inv)
    assert codes(result) == sorted(case.expected), [p.en for p in result.problems]
    for p in result.problems:
        assert p.en and p.zh and p.fix_en and p.fix_zh, p
        assert not re.search(r"\{[a-z_]+\}", p.en + p.zh + p.fix_en + p.fix_zh), p  # all filled


def test_valid_inventory_has_no_problem_or_notice() -> None:
    result = check(valid())
    assert result.problems == [] and result.notices == []
    assert result.changes == []  # nothing for add_host to do: hosts are in their groups


def test_upstream_inventory_is_accepted_and_mapped() -> None:
    result = check(upstream())
    assert result.problems == [], [p.en for p in result.problems]
    assert result.primary == ["chutes-miner-cpu-0"]
    assert result.gpu == [f"chutes-miner-gpu-{i}" for i in range(3)]
    notices = {n.code: n for n in result.notices}
    assert set(notices) == {"upstream_names", "upstream_gpu_auto"}  # one of each, not per host
    assert "external_ip → chutes_external_ip (4)" in notices["upstream_names"].en
    assert "3 upstream GPU host(s)" in notices["upstream_gpu_auto"].en
    changes = {c["name"]: c for c in result.changes}
    assert changes["chutes-miner-cpu-0"]["groups"] == ["chutes_primary"]
    assert changes["chutes-miner-gpu-0"]["groups"] == ["chutes_gpu", "chutes_workers"]
    gpu_vars = changes["chutes-miner-gpu-0"]["vars"]
    assert gpu_vars["chutes_gpu_model"] == "auto"
    assert gpu_vars["chutes_external_ip"] == "1.0.0.11"
    assert gpu_vars["base_admin_ssh_keys"] == [SSH_KEY]


def test_upstream_names_off() -> None:
    """chutes_upstream_compat: false ignores upstream flags and names entirely."""
    result = check(upstream(), upstream_compat=False)
    assert [p.code for p in result.problems] == ["no_primary", "no_gpu_worker"]


def test_upstream_problems_name_the_variable_as_written() -> None:
    inv = upstream()
    inv.host("chutes-miner-gpu-0")["external_ip"] = "1.0.0"
    inv.host("chutes-miner-gpu-1")["chutes_external_ip"] = "1.0.0.99"
    result = check(inv)
    assert codes(result) == [
        ("bad_format", "chutes-miner-gpu-0", "external_ip"),
        ("var_conflict", "chutes-miner-gpu-1", "chutes_external_ip"),
    ]
    (bad,) = [p for p in result.problems if p.code == "bad_format"]
    assert bad.en.startswith("external_ip='1.0.0' is malformed")


def test_upstream_compat_itself_is_checked() -> None:
    result = check(valid(), upstream_compat="yes")
    assert codes(result) == [("wrong_type", ALL, "chutes_upstream_compat")]


def test_address_plan_message_shows_the_defaults() -> None:
    inv = valid()
    inv.cluster["wireguard_network"] = "10.1.0.0/20"
    for index, host in enumerate(inv.hosts.values()):
        host["wireguard_address"] = f"10.1.0.{index + 1}"
    (problem,) = check(inv).problems
    assert problem.en == (
        "wireguard_network=10.1.0.0/20 overlaps chutes_pod_cidr=10.1.0.0/16 (not set: the default); "
        "WireGuard, pod and service ranges must be disjoint."
    )
    assert "（未设置，使用默认值）" in problem.zh


def test_a_failing_rule_is_reported_not_raised() -> None:
    def broken(ctx: Context) -> None:
        raise KeyError("boom")

    from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_rules import validate

    from tests.inventory.conftest import GPUS

    inv = valid()
    result = validate(inv.hostvars(), inv.group_map(), GPUS, rules=[*RULES, broken])
    assert [(p.code, p.host) for p in result.problems] == [("rule_failed", ALL)]
    assert "broken" in result.problems[0].en and "KeyError" in result.problems[0].en


def test_ports_outside_the_clusters_nodeport_range() -> None:
    result = check(valid(), nodeport_range=(30000, 31000))
    assert codes(result) == [("out_of_range", ALL, "miner_api_node_port")]
    assert "miner_api_node_port=32000" in result.problems[0].en
    assert "30000" in result.problems[0].en and "31000" in result.problems[0].en
    inv = valid()
    inv.cluster.update(chutes_registry_port=31001, miner_api_node_port=30999)
    result = check(inv, nodeport_range=(30000, 31000))
    assert codes(result) == [("out_of_range", ALL, "chutes_registry_port")]


@pytest.mark.parametrize(
    ("address", "network"),
    [("10.8.0.2", None), ("192.168.0.2/20", None), ("192.168.15.255", None), (None, None),
     ("192.168.0.2", "192.168.0.1/20"), ("192.168.0.2", [1]), ("192.168.0.7", None),
     ("10.0.0.1", "10.0.0.0/30")],
)  # fmt: skip
def test_wireguard_role_words_address_problems_as_validation(address: Any, network: Any) -> None:
    """The wireguard role's address check (filter wireguard_address_problems) is validation's
    own rule: the same problems, in the same words, for the same values."""
    from ansible_collections.chutes.miner.plugins.filter.wireguard_address_problems import (
        wireguard_address_problems,
    )

    inv = valid()
    if network is not None:
        inv.cluster["wireguard_network"] = network
    if address is None:
        del inv.host("gpu-0")["wireguard_address"]
    else:
        inv.host("gpu-0")["wireguard_address"] = address
    wanted = [
        f"{p.en} {p.fix_en} / {p.zh}{p.fix_zh}"
        for p in check(inv).problems
        if p.host == "gpu-0" and p.var in ("wireguard_address", "wireguard_network")
    ]
    found = wireguard_address_problems(address, network or "192.168.0.0/20", "gpu-0")
    assert found == wanted
    assert bool(found) == (address not in ("192.168.0.7", "10.0.0.1")), found
