"""Render the k8s_binaries role for a three-node inventory on the controller, as a play would:
the role's defaults, the inventory, vars/main.yml, and the facts its earlier tasks collect."""

from __future__ import annotations

from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.ansible_env import REPO

ROLE = REPO / "collections" / "ansible_collections" / "chutes" / "miner" / "roles" / "k8s_binaries"
HOTKEY = "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ"
# What chutes.miner.mirrors exports for the lab's custom profile.
LAB_MIRRORS = {
    "profile": "custom",
    "files_prefix": "http://10.89.77.2:8082/files",
    "artifact_server": "",
    "k8s_binaries": "http://10.89.77.2:8082/kubernetes",
    "k8s_binaries_upstream": "https://dl.k8s.io/release",
}
HOSTS: dict[str, dict[str, Any]] = {
    "cpu-0": {"wireguard_address": "192.168.0.1", "chutes_external_ip": "10.89.77.10"},
    "gpu-0": {"wireguard_address": "192.168.0.2", "chutes_external_ip": "10.89.77.11"},
    "gpu-1": {"wireguard_address": "192.168.0.3", "chutes_external_ip": "10.89.77.12"},
}
GROUPS = {
    "chutes_primary": ["cpu-0"],
    "chutes_workers": ["gpu-0", "gpu-1"],
    "chutes_gpu": ["gpu-0", "gpu-1"],
}
POD_CIDRS = {"cpu-0": "10.1.0.0/24", "gpu-0": "10.1.2.0/24", "gpu-1": "10.1.1.0/24"}


def trusted(value: Any) -> Any:
    """Role files are trusted templates, as Ansible's loader marks them."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value


def load(relative: str) -> Any:
    return trusted(yaml.safe_load((ROLE / relative).read_text()))


class Render:
    """The variables one host sees; ``template(text)`` and ``file(path)`` render in them."""

    def __init__(self, host: str, inventory: dict[str, Any] | None = None, **extra: Any) -> None:
        inventory = inventory or {}
        self.host = host
        base = {
            "groups": GROUPS,
            "inventory_hostname": host,
            "ansible_managed": "Ansible managed",
            "ansible_check_mode": False,
            "ansible_facts": {"architecture": "x86_64"},
            "mirrors_effective": LAB_MIRRORS,
            "wireguard_network": "192.168.0.0/20",
            "chutes_validators": [{"hotkey": HOTKEY, "registry": "10.89.77.2:5000"}],
            **inventory,
        }
        # Every node's view of its own defaults, for the table validate collects.
        net = {}
        for name, values in HOSTS.items():
            own = self._templar(
                {**load("defaults/main.yml"), **base, **values, "inventory_hostname": name}
            )
            own.available_variables = {**own.available_variables, **load("vars/main.yml")}
            net[name] = {
                "node_ip": values["wireguard_address"],
                "external_ip": values["chutes_external_ip"],
                "labels": own.template(trust_as_template("{{ __k8s_binaries_labels }}")),
            }
        variables = {**load("defaults/main.yml"), **base, **HOSTS[host], **load("vars/main.yml")}
        variables["__k8s_binaries_net"] = net
        variables["__k8s_binaries_pod_cidrs"] = POD_CIDRS
        variables["__k8s_binaries_resolved"] = {"stat": {"exists": False}}
        variables.update(extra)
        self.templar = self._templar(variables)
        settings = self.template("{{ __k8s_binaries_settings }}")
        from ansible_collections.chutes.miner.plugins.module_utils import k8s_binaries

        plan = k8s_binaries.plan(settings, net, GROUPS["chutes_primary"], list(HOSTS))
        assert plan["problems"] == [], plan["problems"]
        self.templar.available_variables = {
            **self.templar.available_variables,
            "__k8s_binaries_plan": plan,
        }

    @staticmethod
    def _templar(variables: dict[str, Any]) -> Templar:
        return Templar(loader=DataLoader(), variables=variables)

    def template(self, text: str, **extra: Any) -> Any:
        if extra:
            saved = self.templar.available_variables
            self.templar.available_variables = {**saved, **extra}
            try:
                return self.templar.template(trust_as_template(text))
            finally:
                self.templar.available_variables = saved
        return self.templar.template(trust_as_template(text))

    def file(self, relative: str, **extra: Any) -> str:
        return str(self.template((ROLE / "templates" / relative).read_text(), **extra))

    def var(self, name: str) -> Any:
        return self.template("{{ " + name + " }}")
