"""miner_registry_proxy's entry point `hosts`: the validators' registry names pinned to
127.0.0.1 in one marked block of the hosts file, the rest of the file untouched, reruns quiet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.ansible_env import REPO
from tests.components.conftest import VALIDATOR_A, recap

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Pin the registry names
      ansible.builtin.include_role:
        name: chutes.miner.miner_registry_proxy
        tasks_from: hosts
"""


def _run(tmp_path: Path, hosts: Path, validators: list[dict[str, Any]]) -> str:
    play = tmp_path / "hosts.yml"
    play.write_text(PLAY)
    extra = {
        "ansible_python_interpreter": sys.executable,
        "miner_registry_proxy_hosts_file": str(hosts),
        "chutes_validators": validators,
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            json.dumps(extra),
            str(play),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _validator(hotkey: str) -> dict[str, str]:
    return {
        "hotkey": hotkey,
        "api": "https://a.example",
        "registry": "r.example",
        "socket": "wss://s.example",
    }


def test_names_are_pinned_in_one_block(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.5 cpu-0\n")
    other = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi"
    out = _run(tmp_path, hosts, [_validator(VALIDATOR_A), _validator(other)])
    assert recap(out, "localhost")["changed"] == 1
    lines = hosts.read_text().splitlines()
    assert lines[:2] == ["127.0.0.1 localhost", "10.0.0.5 cpu-0"]
    assert lines[2:] == [
        "# BEGIN chutes.miner.miner_registry_proxy: validator registry names on loopback",
        f"127.0.0.1 {VALIDATOR_A.lower()}.localregistry.chutes.ai",
        f"127.0.0.1 {other.lower()}.localregistry.chutes.ai",
        "# END chutes.miner.miner_registry_proxy: validator registry names on loopback",
    ]
    out = _run(tmp_path, hosts, [_validator(VALIDATOR_A), _validator(other)])
    assert recap(out, "localhost")["changed"] == 0
    _run(tmp_path, hosts, [_validator(VALIDATOR_A)])  # a validator removed: its name goes
    assert other.lower() not in hosts.read_text()
    assert hosts.read_text().count("localregistry.chutes.ai") == 1
