# ruff: noqa: E501  (the case table reads best one case per line)
"""Broken inventories through the real ``ansible-playbook playbooks/validate.yml`` (and
``site.yml``, which starts with validation) against lab nodes.

Each case fails on localhost before any host is contacted, reports exactly the expected
problems in one run (the count proves "all at once"), each in English and Chinese, and
leaves /etc on every lab node byte-for-byte unchanged.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.inventory.conftest import REPO, Nodes

HOTKEY = "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ"
BAD_HOTKEY = HOTKEY[:-1] + "R"
Inventory = dict[str, Any]


def valid_inventory(nodes: Nodes) -> Inventory:
    address = {n.name: n.address for n in nodes.nodes}
    key = Path(f"{nodes.key}.pub").read_text().strip()

    def host(name: str, wg: str, **extra: Any) -> dict[str, Any]:
        return {
            "ansible_host": address[name],
            "chutes_external_ip": address[name],
            "wireguard_address": wg,
            **extra,
        }

    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(nodes.key),
                "chutes_cluster_private": True,
                "wireguard_network": "192.168.0.0/20",
                "chutes_registry_port": 30500,
                "miner_api_node_port": 32000,
                "base_admin_user": "chutes",
                "base_admin_ssh_keys": [key],
                "chutes_validators": [
                    {
                        "hotkey": HOTKEY,
                        "api": "https://api.chutes.ai",
                        "registry": "registry.chutes.ai",
                        "socket": "wss://ws.chutes.ai",
                    },
                ],
            },  # fmt: skip
            "children": {
                "chutes_primary": {"hosts": {"cpu-0": host("cpu-0", "192.168.0.1")}},
                "chutes_workers": {
                    "children": {
                        "chutes_gpu": {
                            "hosts": {
                                "gpu-0": host(
                                    "gpu-0",
                                    "192.168.0.2",
                                    chutes_gpu_model="l4",
                                    chutes_gpu_count=1,
                                ),
                                "gpu-1": host(
                                    "gpu-1",
                                    "192.168.0.3",
                                    chutes_gpu_model="a10",
                                    chutes_gpu_count=1,
                                ),
                            }
                        }
                    }
                },
            },
        }
    }


def hosts_of(inv: Inventory) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def walk(group: dict[str, Any]) -> None:
        out.update(group.get("hosts") or {})
        for child in (group.get("children") or {}).values():
            walk(child)

    walk(inv["all"])
    return out


def gpu_hosts(inv: Inventory) -> dict[str, dict[str, Any]]:
    return inv["all"]["children"]["chutes_workers"]["children"]["chutes_gpu"]["hosts"]  # type: ignore[no-any-return]


def cluster(inv: Inventory) -> dict[str, Any]:
    return inv["all"]["vars"]  # type: ignore[no-any-return]


# --- mutations -------------------------------------------------------------------------


def no_primary(inv: Inventory) -> None:
    cpu = inv["all"]["children"].pop("chutes_primary")["hosts"]
    inv["all"]["children"]["chutes_workers"]["hosts"] = cpu


def second_primary(inv: Inventory) -> None:
    inv["all"]["children"]["chutes_primary"]["hosts"]["gpu-1"] = None


def upstream_two_primaries(inv: Inventory) -> None:
    """Upstream layout: flat hosts with is_primary/gpu_enabled, upstream variable names."""
    flat = {}
    for name, host_vars in hosts_of(inv).items():
        host_vars = dict(host_vars)
        host_vars["external_ip"] = host_vars.pop("chutes_external_ip")
        host_vars["wireguard_ip"] = host_vars.pop("wireguard_address")
        host_vars["is_primary"] = name != "gpu-1"
        host_vars["gpu_enabled"] = name != "cpu-0"
        flat[name] = host_vars
    inv["all"] = {"vars": inv["all"]["vars"], "hosts": flat}


def upstream_valid(inv: Inventory) -> None:
    upstream_two_primaries(inv)
    inv["all"]["hosts"]["gpu-0"]["is_primary"] = False
    inv["all"]["hosts"]["gpu-1"]["is_primary"] = False
    cluster(inv)["registry_port"] = cluster(inv).pop("chutes_registry_port")
    cluster(inv)["ssh_keys"] = cluster(inv).pop("base_admin_ssh_keys")


def bad_hostname(inv: Inventory) -> None:
    gpu = gpu_hosts(inv)
    gpu["GPU_1"] = gpu.pop("gpu-1")


def duplicate_external_ip(inv: Inventory) -> None:
    gpu_hosts(inv)["gpu-1"]["chutes_external_ip"] = gpu_hosts(inv)["gpu-0"]["chutes_external_ip"]


def private_ip_not_allowed(inv: Inventory) -> None:
    cluster(inv)["chutes_cluster_private"] = False


def invalid_external_ip(inv: Inventory) -> None:
    gpu_hosts(inv)["gpu-0"]["chutes_external_ip"] = "203.0.113"


def missing_external_ip(inv: Inventory) -> None:
    del gpu_hosts(inv)["gpu-1"]["chutes_external_ip"]


def duplicate_wireguard(inv: Inventory) -> None:
    gpu_hosts(inv)["gpu-1"]["wireguard_address"] = "192.168.0.2"


def wireguard_outside(inv: Inventory) -> None:
    gpu_hosts(inv)["gpu-0"]["wireguard_address"] = "10.8.0.2"


def wireguard_with_prefix(inv: Inventory) -> None:
    gpu_hosts(inv)["gpu-0"]["wireguard_address"] = "192.168.0.2/20"


def wireguard_network_address(inv: Inventory) -> None:
    inv["all"]["children"]["chutes_primary"]["hosts"]["cpu-0"]["wireguard_address"] = "192.168.0.0"


def corrupted_hotkey(inv: Inventory) -> None:
    cluster(inv)["chutes_validators"][0]["hotkey"] = BAD_HOTKEY


def registry_port_outside(inv: Inventory) -> None:
    cluster(inv)["chutes_registry_port"] = 5000


def registry_port_per_host(inv: Inventory) -> None:
    gpu_hosts(inv)["gpu-0"]["chutes_registry_port"] = 30501


def ports_clash(inv: Inventory) -> None:
    cluster(inv)["miner_api_node_port"] = 30500


def upstream_port_disagrees(inv: Inventory) -> None:
    cluster(inv)["registry_port"] = 30600


def upstream_ip_disagrees(inv: Inventory) -> None:
    gpu_hosts(inv)["gpu-0"]["external_ip"] = "203.0.113.9"


def no_ssh_keys(inv: Inventory) -> None:
    cluster(inv)["base_admin_ssh_keys"] = []


def bad_ssh_key(inv: Inventory) -> None:
    cluster(inv)["base_admin_ssh_keys"].append("ssh-ed25519")


def unsupported_gpu(inv: Inventory) -> None:
    gpu_hosts(inv)["gpu-1"]["chutes_gpu_model"] = "t4"


def missing_gpu_model(inv: Inventory) -> None:
    del gpu_hosts(inv)["gpu-0"]["chutes_gpu_model"]


def zero_gpus(inv: Inventory) -> None:
    gpu_hosts(inv)["gpu-0"]["chutes_gpu_count"] = 0


def combination(inv: Inventory) -> None:
    """Four unrelated mistakes: all four come back from a single run."""
    no_primary(inv)
    corrupted_hotkey(inv)
    duplicate_wireguard(inv)
    unsupported_gpu(inv)


def combination_hosts(inv: Inventory) -> None:
    bad_hostname(inv)
    gpu_hosts(inv)["GPU_1"]["chutes_external_ip"] = "1.2.3.4.5"
    no_ssh_keys(inv)
    ports_clash(inv)


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable[[Inventory], None]
    expected: list[tuple[str, str, str]]  # host, English fragment, Chinese fragment
    playbook: str = "validate.yml"


CASES = [
    Case("no-primary", no_primary, [("all", "no primary host", "没有主节点")]),
    Case(
        "two-primaries-one-gpu",
        second_primary,
        [
            ("all", "2 primary hosts (cpu-0, gpu-1)", "有 2 台主节点"),
            ("gpu-1", "the primary must be a CPU node", "主节点必须是 CPU 节点"),
            ("gpu-1", "the primary is also in chutes_workers", "主节点同时属于 chutes_workers 组"),
        ],
    ),
    Case(
        "upstream-flags-two-primaries",
        upstream_two_primaries,
        [
            ("all", "2 primary hosts (cpu-0, gpu-0)", "有 2 台主节点"),
            ("gpu-0", "the primary must be a CPU node", "主节点必须是 CPU 节点"),
        ],
    ),
    Case("bad-hostname", bad_hostname, [("GPU_1", "not a valid Kubernetes node name", "不是合法的 Kubernetes 节点名")]),
    Case("duplicate-external-ip", duplicate_external_ip,
         [("gpu-0, gpu-1", "is used by several hosts (gpu-0, gpu-1)", "被多台主机使用")]),
    Case("private-ip-not-allowed", private_ip_not_allowed,
         [(h, "is not a public address", "不是公网地址") for h in ("cpu-0", "gpu-0", "gpu-1")]),
    Case("invalid-external-ip", invalid_external_ip,
         [("gpu-0", "chutes_external_ip='203.0.113' is not an IPv4 address", "不是 IPv4 地址")]),
    Case("missing-external-ip", missing_external_ip, [("gpu-1", "chutes_external_ip is not set", "未设置 chutes_external_ip")]),
    Case("duplicate-wireguard", duplicate_wireguard,
         [("gpu-0, gpu-1", "wireguard_address 192.168.0.2 is used by several hosts", "被多台主机使用")]),
    Case("wireguard-outside-network", wireguard_outside,
         [("gpu-0", "10.8.0.2 is outside wireguard_network 192.168.0.0/20", "不在 wireguard_network")]),
    Case("wireguard-with-prefix", wireguard_with_prefix,
         [("gpu-0", "is not a plain IPv4 address (no prefix length)", "不是纯 IPv4 地址")]),
    Case("wireguard-network-address", wireguard_network_address,
         [("cpu-0", "is the network or broadcast address", "网络地址或广播地址")]),
    Case("corrupted-hotkey", corrupted_hotkey, [("all", f"validator hotkey '{BAD_HOTKEY}' is not a valid SS58", "不是合法的 SS58 地址")]),
    Case("registry-port-outside-range", registry_port_outside,
         [("all", "chutes_registry_port=5000 is not a port inside the NodePort range 30000-32767", "不在 NodePort 范围")]),
    Case("registry-port-per-host", registry_port_per_host,
         [("all", "chutes_registry_port differs between hosts", "这是集群级变量")]),
    Case("ports-clash", ports_clash, [("all", "are both 30500; they must differ", "两者必须不同")]),
    Case("upstream-registry-port-disagrees", upstream_port_disagrees,
         [("all", "upstream registry_port=30600 and chutes_registry_port=30500 disagree", "上游变量 registry_port")]),
    Case("upstream-external-ip-disagrees", upstream_ip_disagrees,
         [("gpu-0", "upstream external_ip='203.0.113.9' and chutes_external_ip=", "不一致")]),
    Case("no-ssh-keys", no_ssh_keys, [("all", "base_admin_ssh_keys is empty", "至少一个 SSH 公钥")]),
    Case("bad-ssh-key", bad_ssh_key, [("all", "is not an SSH public key", "不是 SSH 公钥")]),
    Case("unsupported-gpu", unsupported_gpu, [("gpu-1", "chutes_gpu_model='t4' is not a supported GPU model", "不是受支持的 GPU 型号")]),
    Case("missing-gpu-model", missing_gpu_model, [("gpu-0", "GPU host without chutes_gpu_model", "未设置 chutes_gpu_model")]),
    Case("zero-gpus", zero_gpus, [("gpu-0", "chutes_gpu_count=0 must be a whole number from 1 to 10", "必须是 1 到 10")]),
    Case(
        "combination",
        combination,
        [
            ("all", "no primary host", "没有主节点"),
            ("all", "is not a valid SS58", "不是合法的 SS58"),
            ("gpu-0, gpu-1", "wireguard_address 192.168.0.2 is used by several hosts", "被多台主机使用"),
            ("gpu-1", "is not a supported GPU model", "不是受支持的 GPU 型号"),
        ],
    ),
    Case(
        "combination-through-site",
        combination_hosts,
        [
            ("all", "are both 30500; they must differ", "两者必须不同"),
            ("GPU_1", "not a valid Kubernetes node name", "不是合法的 Kubernetes 节点名"),
            ("GPU_1", "'1.2.3.4.5' is not an IPv4 address", "不是 IPv4 地址"),
            ("all", "base_admin_ssh_keys is empty", "至少一个 SSH 公钥"),
        ],
        playbook="site.yml",
    ),
]  # fmt: skip


def run_playbook(playbook: str, inventory: Inventory, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    inv_dir = tmp_path / "inventory"
    inv_dir.mkdir()
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    env = dict(os.environ)
    env.update(
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=f"{REPO / 'collections'}:{Path.home() / '.ansible/collections'}",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inv_dir / "hosts.yml"), f"playbooks/{playbook}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"no JSON from ansible-playbook (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )


def failure_lines(result: dict[str, Any]) -> list[str]:
    for play in result["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                if res.get("failed"):
                    assert host == "localhost", f"a task failed on {host}: hosts were contacted"
                    return list(res["msg"])
    pytest.fail("no failed task in the run")


@pytest.fixture
def etc_before(inventory_nodes: Nodes) -> dict[str, str]:
    """Checksums of /etc on every lab node, taken right before the case runs."""
    return inventory_nodes.etc_checksums()


@pytest.mark.lab
def test_valid_inventory_passes(inventory_nodes: Nodes, tmp_path: Path) -> None:
    rc, result = run_playbook("validate.yml", valid_inventory(inventory_nodes), tmp_path)
    assert rc == 0, json.dumps(result["stats"])
    assert set(result["stats"]) == {"localhost"}


@pytest.mark.lab
def test_upstream_inventory_is_mapped(inventory_nodes: Nodes, tmp_path: Path) -> None:
    inv = valid_inventory(inventory_nodes)
    upstream_valid(inv)
    rc, result = run_playbook("validate.yml", inv, tmp_path)
    assert rc == 0, json.dumps(result, ensure_ascii=False)[-3000:]
    text = json.dumps(result, ensure_ascii=False)
    assert "upstream variable external_ip copied to chutes_external_ip" in text
    assert "upstream variable registry_port copied to chutes_registry_port" in text


@pytest.mark.lab
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_inventory(
    case: Case, inventory_nodes: Nodes, etc_before: dict[str, str], tmp_path: Path
) -> None:
    inventory = copy.deepcopy(valid_inventory(inventory_nodes))
    case.mutate(inventory)
    rc, result = run_playbook(case.playbook, inventory, tmp_path)
    assert rc == 2
    assert set(result["stats"]) == {"localhost"}, "a host was contacted"
    lines = failure_lines(result)
    count = len(case.expected)
    assert lines[0].startswith(f"Inventory validation found {count} problem(s)"), lines
    assert lines[1].startswith(f"清单校验发现 {count} 个问题"), lines
    pairs = list(zip(lines[2::2], lines[3::2], strict=True))
    assert len(pairs) == count, lines
    unmatched = list(pairs)
    for host, english, chinese in case.expected:
        match = next(
            (p for p in unmatched if p[0].startswith(f"[{host}] ") and english in p[0] and chinese in p[1] and p[1].startswith(f"[{host}] ")),
            None,
        )  # fmt: skip
        assert match is not None, f"missing [{host}] {english} / {chinese} in {lines}"
        unmatched.remove(match)
    assert inventory_nodes.etc_checksums() == etc_before, "a broken inventory changed a lab node"
