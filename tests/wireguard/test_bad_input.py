"""chutes.miner.wireguard refuses bad inventories before changing anything.

Each case writes a throwaway three-node inventory whose hosts use the local connection
(no lab needed) and runs playbooks/wireguard.yml in check mode: the role must fail in its
validate step, name the problem, and report no task as changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible_env import REPO

PLAYBOOK = REPO / "playbooks" / "wireguard.yml"


def _inventory(**overrides: dict[str, Any]) -> dict[str, Any]:
    hosts: dict[str, dict[str, Any]] = {
        "wgt-1": {"wireguard_address": "192.168.0.1", "chutes_external_ip": "10.0.0.1"},
        "wgt-2": {"wireguard_address": "192.168.0.2", "chutes_external_ip": "10.0.0.2"},
        "wgt-3": {"wireguard_address": "192.168.0.3", "chutes_external_ip": "10.0.0.3"},
    }
    for host, values in overrides.items():
        hosts[host.replace("_", "-")].update(values)
    return {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "wireguard_userspace": True,
            },
            "children": {
                "chutes_primary": {"hosts": {"wgt-1": hosts["wgt-1"]}},
                "chutes_workers": {"hosts": {h: hosts[h] for h in ("wgt-2", "wgt-3")}},
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
        ANSIBLE_GATHERING="explicit",
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


def _assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert message in out, out
    # Refused in validate: no install, key or config task ran and nothing changed.
    assert "install |" not in out, out
    assert "keys |" not in out, out
    assert "changed=0" in out and "changed=1" not in out, out


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"wgt_3": {"wireguard_address": "192.168.0.2"}},
            "duplicate wireguard_address: 192.168.0.2 (wgt-2, wgt-3)",
            id="duplicate-address",
        ),
        pytest.param(
            {"wgt_2": {"wireguard_address": "10.8.0.2"}},
            "wireguard_address=10.8.0.2 is outside wireguard_network 192.168.0.0/20",
            id="outside-subnet",
        ),
        pytest.param(
            {"wgt_2": {"wireguard_address": "192.168.0.2/20"}},
            "it must be a plain IPv4 address (no prefix length)",
            id="address-with-prefix",
        ),
        pytest.param(
            {"wgt_2": {"wireguard_address": "192.168.15.255"}},
            "is the network or broadcast address",
            id="broadcast-address",
        ),
        pytest.param(
            {"wgt_3": {"wireguard_mtu": 9500}},
            "wireguard_mtu 9500 is out of range 1280-8920",
            id="mtu-too-high",
        ),
        pytest.param(
            {"wgt_3": {"wireguard_mtu": 1000}},
            "wireguard_mtu 1000 is out of range 1280-8920",
            id="mtu-too-low",
        ),
        pytest.param(
            {"wgt_1": {"chutes_external_ip": ""}},
            "the hub needs wireguard_endpoint",
            id="hub-without-endpoint",
        ),
    ],
)
def test_bad_input_is_refused_before_any_change(
    tmp_path: Path, overrides: dict[str, dict[str, Any]], message: str
) -> None:
    _assert_refused(_run(tmp_path, _inventory(**overrides)), message)


def test_bad_network_is_refused(tmp_path: Path) -> None:
    inventory = _inventory()
    inventory["all"]["vars"]["wireguard_network"] = "192.168.0.1/20"
    _assert_refused(_run(tmp_path, inventory), "it must be an IPv4 network in CIDR form")


def test_bad_topology_is_refused_by_the_argument_spec(tmp_path: Path) -> None:
    inventory = _inventory()
    inventory["all"]["vars"]["wireguard_topology"] = "star"
    _assert_refused(_run(tmp_path, inventory), "wireguard_topology")
