"""playbooks/nvidia.yml run for real on this machine with the local connection, which has no
GPU and no driver: a small, named stand-in ``nvidia-smi`` (first on PATH) reports a driver and
records each call. Everything the role does on such a host is read-only probing, so the runs
prove what the role would do without touching the machine:

- ``nvidia_install_driver: false``: nvidia-smi is asked, nothing is installed or downloaded (no
  apt task runs), a rerun changes nothing and nothing reboots;
- a driver older than ``nvidia_min_driver_branch`` and wrong install inputs stop the run
  before any change, with messages in English and Chinese (every input check: test_plan.py);
- the reboot guard of tasks/reboot.yml: a stale module without ``nvidia_reboot_allowed`` only
  warns; with it the reboot task is reached (Ansible's reboot refuses the local connection, so
  the machine is never rebooted).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.ansible_env import REPO, ansible_env

PLAYBOOK = REPO / "playbooks" / "nvidia.yml"
STAND_IN_SMI = """#!/bin/sh
# Stand-in nvidia-smi (tests/nvidia): no GPU here. Records its arguments, answers the driver
# version query with one line per GPU, as the real one does.
echo "$*" >> "{log}"
case "$*" in
  *--query-gpu=driver_version*) printf '%s\\n' {versions} ;;
  *) echo "stand-in nvidia-smi: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""


def _run(
    tmp_path: Path, extra: dict[str, Any], smi: list[str] | None, playbook: Path = PLAYBOOK
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], list[str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "nvidia-smi.log"
    if smi is not None:
        script = bindir / "nvidia-smi"
        script.write_text(STAND_IN_SMI.format(log=log, versions=" ".join(smi)))
        script.chmod(0o755)
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                # Nothing on this machine may change: no nouveau file, no initramfs.
                "nvidia_blacklist_nouveau": False,
                **extra,
            },
            "children": {"chutes_gpu": {"hosts": {"gpu-t": {}}}},
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    env = ansible_env(tmp_path / "tmp")
    env["PATH"] = f"{bindir}:{env.get('PATH', '')}"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(path), str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    calls = log.read_text().splitlines() if log.exists() else []
    return result, report, calls


def _tasks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task name -> this host's result (the last play that ran it)."""
    out = {}
    for play in report.get("plays", []):
        for task in play["tasks"]:
            name = task["task"]["name"].split(" : ", 1)[-1]  # without "chutes.miner.nvidia : "
            out[name] = task["hosts"].get("gpu-t", {})
    return out


def _ran(result: dict[str, Any]) -> bool:
    return bool(result) and not result.get("skipped", False)


def test_preinstalled_driver_downloads_nothing_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    for run in (1, 2):
        result, report, calls = _run(
            tmp_path, {"nvidia_install_driver": False}, ["575.57.08", "575.57.08"]
        )
        assert result.returncode == 0, result.stdout + result.stderr
        stats = report["stats"]["gpu-t"]
        assert stats["changed"] == 0 and stats["failures"] == 0, (run, stats)
        tasks = _tasks(report)
        assert (
            tasks["validate | Decide what to do on this host"]["ansible_facts"]["__nvidia_plan"][
                "smi_version"
            ]
            == "575.57.08"
        )
        # No apt, dpkg selection or reboot task ran: nothing was downloaded or installed.
        for name, res in tasks.items():
            assert not (name.startswith(("install |", "reboot |")) and _ran(res)), name
        assert calls == ["--query-gpu=driver_version --format=csv,noheader"] * run


def test_an_old_preinstalled_driver_is_refused_before_any_change(tmp_path: Path) -> None:
    result, report, _ = _run(tmp_path, {"nvidia_install_driver": False}, ["535.261.03"])
    assert result.returncode != 0
    refusal = _tasks(report)["validate | Refuse invalid inputs before any change"]
    assert refusal["failed"] is True
    assert "older than branch 570" in refusal["msg"] and "预装驱动 535.261.03" in refusal["msg"]
    assert report["stats"]["gpu-t"]["changed"] == 0
    assert not any(n.startswith(("install |", "configure |")) for n in _tasks(report))


def test_install_mode_refuses_everything_wrong_at_once(tmp_path: Path) -> None:
    # This machine is Debian and its mirrors role exported no CUDA repository.
    result, report, _ = _run(
        tmp_path, {"mirrors_effective": {"profile": "none", "cuda_repo": ""}}, None
    )
    assert result.returncode != 0
    msg = _tasks(report)["validate | Refuse invalid inputs before any change"]["msg"]
    assert "2 problem(s), nothing was changed" in msg, msg
    assert "supported on Ubuntu only" in msg and "mirrors_effective names no CUDA repository" in msg
    assert "未做任何更改" in msg
    assert report["stats"]["gpu-t"]["changed"] == 0


REBOOT_PLAY = """
- name: The reboot phase alone, with the decision the install phase would have made
  hosts: chutes_gpu
  gather_facts: false
  tasks:
    - name: Run tasks/reboot.yml
      ansible.builtin.include_role:
        name: chutes.miner.nvidia
        tasks_from: reboot.yml
      vars:
        __nvidia_after: {driver_version: 580.95.05, stale: %(stale)s}
"""


def test_reboot_guard(tmp_path: Path) -> None:
    play = tmp_path / "reboot.yml"
    cases = {
        # stale, allowed -> warned, reboot attempted
        (True, False): (True, False),
        (False, True): (False, False),
        (True, True): (False, True),
    }
    for (stale, allowed), (warned, attempted) in cases.items():
        play.write_text(REBOOT_PLAY % {"stale": str(stale).lower()})
        result, report, _ = _run(tmp_path, {"nvidia_reboot_allowed": allowed}, None, play)
        tasks = _tasks(report)
        assert _ran(tasks["reboot | Warn that the new driver needs a reboot"]) is warned
        reboot = tasks["reboot | Reboot to load the new driver"]
        assert _ran(reboot) is attempted, (stale, allowed)
        if attempted:
            # Reached, and refused by Ansible itself: the local connection is this machine.
            assert "would reboot the control node" in reboot["msg"]
            assert result.returncode != 0
        else:
            assert result.returncode == 0, result.stdout
        # Not in a cluster (no contract facts): no drain.
        assert not _ran(tasks["reboot | Drain the node"])


def test_install_mode_needs_the_cuda_repository_among_the_hosts_apt_sources(
    tmp_path: Path,
) -> None:
    # mirrors_effective names a CUDA mirror, but the mirrors role never wrote it on this host.
    repo = "https://developer.download.nvidia.cn/compute/cuda/repos/ubuntu2204/x86_64/"
    result, report, _ = _run(
        tmp_path, {"mirrors_effective": {"profile": "tuna", "cuda_repo": repo}}, None
    )
    assert result.returncode != 0
    msg = _tasks(report)["validate | Refuse invalid inputs before any change"]["msg"]
    assert f"the CUDA repository {repo} is not in this host's apt sources" in msg, msg
    assert "请先在该主机上运行 mirrors 角色" in msg
    assert report["stats"]["gpu-t"]["changed"] == 0
