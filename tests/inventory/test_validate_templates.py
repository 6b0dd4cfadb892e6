"""Inventories whose mistakes only show inside a real ``ansible-playbook`` run.

ansible-core 2.19 templates lazily: a variable whose template fails (an undefined name, an
error in an expression, a failing lookup) reaches the filter as a marker object instead of
raising. The run below, as a user of the installed collection runs it (no repository
ansible.cfg, another working directory), must turn each one into an "unresolvable" row that
names the host and the variable, never into an odd type or an ``undefined`` error, and must
report the other mistakes of the same inventory with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.inventory.conftest import HOTKEY, REPO, SSH_KEY

INVENTORY = f"""\
all:
  vars:
    base_admin_ssh_keys: ["{SSH_KEY}"]
    miner_hotkey_path: /root/hotkey.json
    wireguard_mtu: "{{{{ no_such_thing.mtu }}}}"
    chutes_validators:
      - hotkey: {HOTKEY}
        api: https://api.chutes.ai
        registry: registry.chutes.ai
        socket: "{{{{ lookup('ansible.builtin.file', '/nonexistent/socket-url') }}}}"
  children:
    chutes_primary:
      hosts:
        cpu-0: {{ansible_host: 127.0.0.1, chutes_external_ip: 8.8.8.10, wireguard_address: 192.168.0.1}}
    chutes_gpu:
      hosts:
        gpu-0: {{ansible_host: "{{{{ undefined_address }}}}", chutes_external_ip: 8.8.8.21, wireguard_address: 192.168.0.2, chutes_gpu_model: h200, chutes_gpu_count: 8}}
        gpu-1: {{ansible_host: 8.8.8.22, chutes_external_ip: 8.8.8.22, wireguard_address: 192.168.0.3, chutes_gpu_model: h200, chutes_gpu_count: "{{{{ 8 // 0 }}}}"}}
      host:
        gpu-2: {{ansible_host: 8.8.8.23}}
    chutes_workers:
      children:
        chutes_gpu:
"""  # noqa: E501


def test_template_errors_and_other_mistakes_in_one_table(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(path),
         str(REPO / "playbooks/validate.yml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-4000:]
    table = proc.stdout[proc.stdout.index("Inventory validation found") :]
    for fragment in (
        "wireguard_mtu cannot be templated: 'no_such_thing' is undefined",
        "ansible_host cannot be templated: 'undefined_address' is undefined",
        "chutes_gpu_count cannot be templated:",
        "chutes_validators cannot be templated:",
        "ansible_host='127.0.0.1' is the controller itself (loopback)",
        "group chutes_gpu has the key 'host', which is none of vars, hosts, children",
        "wireguard_mtu 无法解析（模板求值失败）",
    ):
        assert fragment in table, fragment
    assert "Inventory validation found 6 problem(s)" in table, table
    assert (
        "chutes_gpu_count cannot be templated: Error rendering template: integer division" in table
    )
    for word in ("Marker", "marker", "Traceback", "AnsibleUndefinedVariable", ".."):
        assert word not in out, word
