"""Helpers of the inventory suite: inventories as plain data, checked without any host.

``Inv`` describes an inventory the way an operator writes one (cluster vars, hosts with their
groups and vars) and turns it into what the validation reads: ``hostvars`` as plain dicts and
``groups``, or a YAML inventory file for the end-to-end cases. ``check`` runs the real
validation (plugin_utils.inventory_rules.validate) on it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from ansible_collections.chutes.miner.plugins.filter.inventory_problems import mirrors_data
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_rules import Result, validate

from tests.ansible_env import REPO

ROLE = REPO / "collections/ansible_collections/chutes/miner/roles/preflight"
GPUS: dict[str, Any] = yaml.safe_load((ROLE / "vars/gpus.yml").read_text())["__preflight_gpus"]
UPSTREAM_NAMES: dict[str, str] = yaml.safe_load((ROLE / "vars/main.yml").read_text())[
    "__preflight_upstream_names"
]
MIRRORS = mirrors_data()
HOTKEY = "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxkdB1P3h8xpGA5nXk3v0yAQbzLHGvJdV9tX1c2bB7X op@lt"
VALIDATOR = {
    "hotkey": HOTKEY,
    "api": "https://api.chutes.ai",
    "registry": "registry.chutes.ai",
    "socket": "wss://ws.chutes.ai",
}


@dataclass
class Inv:
    """An inventory: cluster-wide vars, and per host its groups and vars."""

    cluster: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def hostvars(self) -> dict[str, dict[str, Any]]:
        return {h: {**copy.deepcopy(self.cluster), **v} for h, v in self.hosts.items()}

    def group_map(self) -> dict[str, list[str]]:
        out = {g: list(h) for g, h in self.groups.items()}
        out["all"] = list(self.hosts)
        out["ungrouped"] = [h for h in self.hosts if not any(h in m for m in self.groups.values())]
        return out

    def host(self, name: str) -> dict[str, Any]:
        return self.hosts[name]

    def to_yaml(self) -> dict[str, Any]:
        """The inventory as an Ansible YAML inventory file."""
        children: dict[str, Any] = {}
        for group, members in self.groups.items():
            children[group] = {"hosts": dict.fromkeys(members)}
        return {
            "all": {
                "vars": copy.deepcopy(self.cluster),
                "hosts": copy.deepcopy(self.hosts),
                "children": children,
            }
        }


def valid() -> Inv:
    """A correct three-node cluster (CPU primary, two GPU workers) in our own format."""

    def node(index: int, **extra: Any) -> dict[str, Any]:
        return {
            "ansible_host": f"10.20.0.{10 + index}",
            "chutes_external_ip": f"8.8.{index}.{10 + index}",
            "wireguard_address": f"192.168.0.{1 + index}",
            **extra,
        }

    return Inv(
        cluster={
            "base_admin_user": "chutes",
            "base_admin_ssh_keys": [SSH_KEY],
            "chutes_validators": [dict(VALIDATOR)],
        },
        hosts={
            "cpu-0": node(0),
            "gpu-0": node(1, chutes_gpu_model="h200", chutes_gpu_count=8),
            "gpu-1": node(2, chutes_gpu_model="l40s", chutes_gpu_count=4),
        },
        groups={
            "chutes_primary": ["cpu-0"],
            "chutes_gpu": ["gpu-0", "gpu-1"],
            "chutes_workers": ["gpu-0", "gpu-1"],
        },
    )


def upstream() -> Inv:
    """An inventory in the upstream (rayonlabs/chutes-miner, microk8s era) format: flat hosts,
    flags and old names, no GPU model or count; values replaced with working ones."""
    return Inv(
        cluster={
            "ssh_keys": [SSH_KEY],
            "user": "billybob",
            "ansible_user": "ubuntu",
            "validator": HOTKEY,
            "is_primary": False,
            "gpu_enabled": True,
            "registry_port": 30500,
            "ansible_ssh_common_args": "-o ControlPath=none",
            "ansible_ssh_retries": 3,
            "ubuntu_major": "22",
            "ubuntu_minor": "04",
            "cuda_version": "12-6",
            "nvidia_version": "560",
            "skip_cuda": False,
            "ipv6_enabled": True,
            "wireguard_mtu": 1380,
            "amd_sev": False,
            "cc_min_compute_capability": 9.0,
        },
        hosts={
            "chutes-miner-cpu-0": {
                "ansible_host": "1.0.0.10",
                "external_ip": "1.0.0.10",
                "wireguard_ip": "192.168.0.1",
                "gpu_enabled": False,
                "is_primary": True,
            },
            **{
                f"chutes-miner-gpu-{i}": {
                    "ansible_host": f"1.0.0.{11 + i}",
                    "external_ip": f"1.0.0.{11 + i}",
                    "wireguard_ip": f"192.168.0.{3 + i}",
                }
                for i in range(3)
            },
        },
    )


def check(inv: Inv, **kwargs: Any) -> Result:
    kwargs.setdefault("upstream_names", UPSTREAM_NAMES)
    kwargs.setdefault("mirrors", MIRRORS)
    return validate(inv.hostvars(), inv.group_map(), GPUS, **kwargs)


def codes(result: Result) -> list[tuple[str, str, str]]:
    """(code, host, variable) of every problem, sorted."""
    return sorted((p.code, p.host, p.var) for p in result.problems)


@pytest.fixture
def inv() -> Inv:
    return valid()
