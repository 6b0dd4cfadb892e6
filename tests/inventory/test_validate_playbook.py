"""Real inventories through Ansible itself, and the only two end-to-end runs of the suite.

The example and lab inventories go through Ansible's own inventory loader and lazy
``hostvars`` (group_vars, lookups) into the filter, in process. The two ``ansible-playbook``
runs prove what only a real run can: an upstream inventory passes ``validate.yml`` with one
notice table, and a broken one stops ``site.yml`` with the problem table, identical without
the repository's ansible.cfg, while TCP listeners standing in for the hosts see no
connection at all.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager
from ansible_collections.chutes.miner.plugins.filter.inventory_problems import inventory_problems

from tests.inventory.conftest import GPUS, REPO, SSH_KEY, UPSTREAM_NAMES, upstream

BIN = Path(sys.executable).parent


def _through_ansible(source: Path) -> dict[str, Any]:
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(source)])
    variables = VariableManager(loader=loader, inventory=inventory)
    hostvars = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
    return inventory_problems(
        hostvars,
        inventory.get_groups_dict(),
        GPUS,
        upstream_names=UPSTREAM_NAMES,
        sources=[str(source)],
    )


LAB_IMAGES = ("control_api", "graval", "postgresql", "redis", "nginx")


def _lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, images: bool) -> None:
    """A lab directory as tests/lab makes it: the SSH key and, after a build, the record of the
    miner images (tests/lab/build-miner-images.sh) that the lab's components.yml reads."""
    key = tmp_path / "id_ed25519"
    key.with_suffix(".pub").write_text(SSH_KEY + "\n")
    monkeypatch.setenv("CHUTES_LAB_KEY", str(key))
    monkeypatch.setenv("CHUTES_LAB_DIR", str(tmp_path))
    if images:
        record = {
            name: {"repository": f"chutes-miner/{name}", "tag": "1", "digest": "sha256:" + "a" * 64}
            for name in LAB_IMAGES
        }
        (tmp_path / "miner-images.json").write_text(json.dumps({"format": 1, "images": record}))


def test_lab_inventory_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _lab_dir(tmp_path, monkeypatch, images=True)
    result = _through_ansible(REPO / "inventories/lab")
    assert result["problems"] == [] and result["notices"] == []
    assert result["primary"] == ["cpu-0"] and result["gpu"] == ["gpu-0", "gpu-1"]


def test_lab_inventory_without_an_image_build_names_the_missing_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lab_dir(tmp_path, monkeypatch, images=False)
    problems = _through_ansible(REPO / "inventories/lab")["problems"]
    unresolved = {p["var"] for p in problems if p["code"] == "unresolvable"}
    assert "miner_api_image_tag" in unresolved and "miner_redis_image_digest" in unresolved
    assert all("miner-images.json" in p["en"] for p in problems), problems


def test_example_inventory_passes_once_its_placeholders_are_replaced(tmp_path: Path) -> None:
    as_shipped = _through_ansible(REPO / "inventories/example")
    assert {(p["code"], p["var"]) for p in as_shipped["problems"]} == {
        ("placeholder_address", "ansible_host"),
        ("placeholder_address", "chutes_external_ip"),
    }
    copy = tmp_path / "mycluster"
    shutil.copytree(REPO / "inventories/example", copy)
    hosts = copy / "inventory.yml"
    hosts.write_text(hosts.read_text().replace("203.0.113.", "8.8.8."))
    assert _through_ansible(copy)["problems"] == []


# --- end to end -----------------------------------------------------------------------------


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    """Three TCP listeners on 127.0.0.1 that stand in for the hosts' SSH servers."""
    socks = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        socks.append(sock)
    yield socks
    for sock in socks:
        sock.close()


def _contacted(socks: list[socket.socket]) -> int:
    count = 0
    for sock in socks:
        try:
            while True:
                conn, _ = sock.accept()
                conn.close()
                count += 1
        except BlockingIOError:
            pass
    return count


def _playbook(
    playbook: str, inventory: Path, cwd: Path, repo_config: bool
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(REPO / "collections")
    if repo_config:
        env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "playbooks" / playbook)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_upstream_inventory_passes_validate(tmp_path: Path, listeners: list[socket.socket]) -> None:
    inv = upstream()
    for sock, host in zip(listeners, list(inv.hosts)[:3], strict=True):
        inv.host(host)["ansible_port"] = sock.getsockname()[1]
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inv.to_yaml(), sort_keys=False))
    proc = _playbook("validate.yml", path, REPO, repo_config=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert out.count("Inventory notices: 节点清单提示：") == 1
    assert "external_ip → chutes_external_ip (4)" in out
    assert "3 upstream GPU host(s) declare no chutes_gpu_model: set to auto" in out
    assert "[WARNING]" not in proc.stderr, proc.stderr
    assert _contacted(listeners) == 0


def test_upstream_hosts_join_the_chutes_groups_with_our_names(tmp_path: Path) -> None:
    """What the later plays see after validation: upstream-flagged hosts in the chutes groups,
    upstream variable names copied to ours (the add_host step), nothing contacted."""
    inv = upstream()
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inv.to_yaml(), sort_keys=False))
    seen_path = tmp_path / "seen.json"
    (tmp_path / "after.yml").write_text(
        f"- ansible.builtin.import_playbook: {REPO / 'playbooks' / 'validate.yml'}\n"
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.copy:\n"
        f"        dest: {seen_path}\n"
        "        content: \"{{ {'gpu': groups['chutes_gpu'] | sort, 'workers':"
        " groups['chutes_workers'] | sort, 'ip': dict(groups['all'] | sort"
        " | map('extract', hostvars, 'chutes_external_ip') | map('default', '-')"
        " | zip(groups['all'] | sort) | map('reverse'))} | to_json }}\"\n"
    )
    proc = _playbook(str(tmp_path / "after.yml"), path, REPO, repo_config=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    seen = json.loads(seen_path.read_text())
    gpu = sorted(h for h, v in inv.hosts.items() if {**inv.cluster, **v}["gpu_enabled"])
    assert gpu and seen["gpu"] == gpu
    assert set(gpu) <= set(seen["workers"])
    for host, values in inv.hosts.items():
        if "external_ip" in values:
            assert seen["ip"][host] == values["external_ip"], host


def test_broken_inventory_stops_site_before_any_host(
    tmp_path: Path, listeners: list[socket.socket]
) -> None:
    ports = [sock.getsockname()[1] for sock in listeners]
    text = f"""\
all:
  vars:
    base_admin_ssh_keys: ["{SSH_KEY}"]
    chutes_cluster_private: true
    wireguard_network: 10.1.0.0/20
    wireguard_port: [51820]
  children:
    chutes_primary:
      hosts:
        cpu-0: {{ansible_host: 127.0.0.1, ansible_port: {ports[0]}, chutes_external_ip: 10.30.0.1, wireguard_address: 10.1.0.1}}
    chutes_gpu:
      hosts:
        gpu-0: {{ansible_host: 127.0.0.1, ansible_port: {ports[1]}, chutes_external_ip: 10.30.0.2, wireguard_address: 10.1.0.2, chutes_gpu_model: h200, chutes_gpu_count: 8}}
        gpu-1: {{ansible_host: 127.0.0.1, ansible_port: {ports[2]}, chutes_external_ip: 10.30.0.3, wireguard_address: 10.1.0.3, chutes_gpu_model: h200, chutes_gpu_count: "eight"}}
        gpu-1: {{ansible_host: 127.0.0.1, ansible_port: {ports[2]}, chutes_external_ip: 10.30.0.3, wireguard_address: 10.1.0.3, chutes_gpu_model: h200, chutes_gpu_count: "eight"}}
    chutes_workers:
      children:
        chutes_gpu:
"""  # noqa: E501
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    outputs = []
    for repo_config in (True, False):
        proc = _playbook("site.yml", path, tmp_path, repo_config)
        assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
        start = proc.stdout.index("Inventory validation found")
        table = proc.stdout[start:].split("\n\n[ERROR]")[0].split("\n[ERROR]")[0].strip()
        outputs.append(table)
        recap = proc.stdout.split("PLAY RECAP")[1]
        assert "localhost" in recap and "cpu-0" not in recap and "gpu-0" not in recap
    assert outputs[0] == outputs[1], "the report differs without the repository's ansible.cfg"
    lines = outputs[0].splitlines()
    assert lines[0] == "Inventory validation found 4 problem(s); no host was contacted or changed."
    assert lines[1] == "节点清单校验发现 4 个问题；未连接也未修改任何主机。"
    for fragment in (
        "key 'gpu-1' appears twice in one mapping",
        "wireguard_port is a list [51820], but it must be a whole number from 1 to 65535.",
        "chutes_gpu_count is a string 'eight', but it must be a whole number from 1 to 10.",
        "wireguard_network=10.1.0.0/20 overlaps chutes_pod_cidr=10.1.0.0/16 (not set: the default)",
        "wireguard_port 当前为列表 [51820]，但应为 1 到 65535 之间的整数。",
    ):
        assert fragment in outputs[0], fragment
    assert "cpu-0, gpu-0, gpu-1" in outputs[0]  # one row for the three hosts with the same problem
    assert _contacted(listeners) == 0
