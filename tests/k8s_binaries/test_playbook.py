"""playbooks/kubernetes.yml against throwaway three-node inventories whose hosts use the local
connection (no lab needed), in check mode: the distribution choice, and the role refusing bad
inputs with every problem at once before any host is changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.ansible_env import REPO

PLAYBOOK = REPO / "playbooks" / "kubernetes.yml"


def _inventory(**cluster: Any) -> dict[str, Any]:
    hosts = {
        f"k8t-{i}": {"wireguard_address": f"192.168.0.{i}", "chutes_external_ip": f"10.0.0.{i}"}
        for i in (1, 2, 3)
    }
    return {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                **cluster,
            },
            "children": {
                "chutes_primary": {"hosts": {"k8t-1": hosts["k8t-1"]}},
                "chutes_workers": {"hosts": {h: hosts[h] for h in ("k8t-2", "k8t-3")}},
                "chutes_gpu": {"hosts": {"k8t-3": {}}},
            },
        }
    }


def _run(tmp_path: Path, inventory: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=f"{REPO / 'collections'}:{Path.home() / '.ansible/collections'}",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "tmp"),
    )
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(path),
            "--check",
            str(PLAYBOOK),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )


def test_microk8s_is_the_default_and_validates_first(tmp_path: Path) -> None:
    # No bundle and no resolvers: the microk8s role refuses before any change.
    result = _run(tmp_path, _inventory())
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    flat = " ".join(out.split())  # the callback wraps long messages
    assert "chutes.miner.microk8s:" in flat and "nothing was changed" in flat, out
    assert "microk8s_dns_upstreams is empty" in flat, out
    assert "未做任何更改" in out
    assert "install |" not in out and "validate | Check every input" in out, out


def test_an_unknown_distribution_is_refused(tmp_path: Path) -> None:
    result = _run(tmp_path, _inventory(chutes_kubernetes="k3s"))
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "chutes_kubernetes=k3s is not microk8s or binaries" in out, (
        out
    )
    assert "不是 microk8s 或 binaries" in out


def test_overlapping_networks_are_refused_all_at_once_before_any_change(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        _inventory(
            chutes_kubernetes="binaries",
            chutes_pod_cidr="192.168.0.0/16",
            chutes_service_cidr="10.0.0.0/24",
        ),
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "nothing was changed" in out and "未做任何更改" in out, out
    # All of them in one message: pod vs WireGuard network, service network vs the hosts'
    # external addresses (one line per host), and the pod network's own size is fine.
    assert "k8s_binaries_pod_cidr 192.168.0.0/16 overlaps k8s_binaries_node_network" in out, out
    for host in ("k8t-1", "k8t-2", "k8t-3"):
        assert (
            f"[{host}] k8s_binaries_service_cidr 10.0.0.0/24 contains this host's address" in out
        ), out
    assert "install |" not in out, out
    assert "changed=0" in out and "changed=1" not in out, out
