"""Fixtures of the gpu_resources tests: an inventory (the primary and two GPU hosts, local
connections, nothing is done on them), ``playbooks/nvidia.yml`` limited to the primary (so only
the GPU resources play runs), and control planes of this package's own with two GPU nodes.

No kubelet runs in the control plane: node status is written here in a kubelet's (or a device
plugin's) place, and the DaemonSets are never waited for (``miner_wait: false``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible_env import REPO, run_playbook
from tests.k8s import controlplane
from tests.k8s.controlplane import ControlPlane

PLAYBOOK = REPO / "playbooks" / "nvidia.yml"
GPUS = {"gpu-0": 2, "gpu-1": 4}


@dataclass
class Play:
    """playbooks/nvidia.yml on the primary only, against one control plane."""

    inventory: Path
    cp: ControlPlane

    def run(self, *extra: str, **extra_vars: Any) -> tuple[int, str]:
        variables = {
            "ansible_python_interpreter": sys.executable,
            "chutes_kubeconfig": str(self.cp.kubeconfig),
            "miner_common_k8s_client_install": False,
            "miner_wait": False,
            **extra_vars,
        }
        return run_playbook(PLAYBOOK, self.inventory, variables, *extra)


def write_inventory(path: Path, gpus: dict[str, Any]) -> Path:
    hosts = {
        name: {"ansible_connection": "local", "chutes_gpu_count": n} for name, n in gpus.items()
    }
    inventory = {
        "all": {
            "vars": {"chutes_kubernetes": "binaries"},
            "children": {
                "chutes_primary": {"hosts": {"cpu-0": {"ansible_connection": "local"}}},
                "chutes_gpu": {"hosts": hosts},
                "chutes_workers": {"children": {"chutes_gpu": {}}},
            },
        }
    }
    path.write_text(yaml.safe_dump(inventory))
    return path


def add_nodes(cp: ControlPlane, names: list[str]) -> None:
    """Node objects as the Kubernetes role leaves them (labelled GPU nodes), without GPUs."""
    for name in names:
        cp.apply(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": {"chutes/gpu-node": "true"}},
                }
            )
        )


def set_gpus(cp: ControlPlane, node: str, count: int | None) -> None:
    """Write nvidia.com/gpu into the node's status as a device plugin's kubelet would
    (None removes it)."""
    value = None if count is None else str(count)
    patch = {
        "status": {"capacity": {"nvidia.com/gpu": value}, "allocatable": {"nvidia.com/gpu": value}}
    }
    cp.kubectl(
        "patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps(patch)
    )


def node_gpus(cp: ControlPlane, node: str) -> tuple[str | None, str | None]:
    """(capacity, allocatable) nvidia.com/gpu of ``node``."""
    status = json.loads(cp.kubectl("get", "node", node, "-o", "json").stdout)["status"]
    return (
        (status.get("capacity") or {}).get("nvidia.com/gpu"),
        (status.get("allocatable") or {}).get("nvidia.com/gpu"),
    )


def start_control_plane() -> ControlPlane:
    try:
        cp = controlplane.start(controller_manager=False)
    except controlplane.BinariesMissing as exc:
        pytest.fail(str(exc))
    add_nodes(cp, list(GPUS))
    return cp


def serve() -> Iterator[ControlPlane]:
    cp = start_control_plane()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[ControlPlane]:
    """A control plane of this module's own with the GPU nodes gpu-0 and gpu-1."""
    yield from serve()


@pytest.fixture(scope="module")
def lab_cluster() -> Iterator[ControlPlane]:
    """Another one, for the stand-in: GPU nodes without GPUs, as in the lab."""
    yield from serve()


@pytest.fixture(scope="module")
def play(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Play:
    return Play(write_inventory(tmp_path_factory.mktemp("gpu") / "inventory.yml", GPUS), cluster)
