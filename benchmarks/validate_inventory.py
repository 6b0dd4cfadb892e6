#!/usr/bin/env python3
"""Inventory validation time at scale (medians over N runs, sizes interleaved).

For each size it writes a valid inventory of that many hosts (one CPU primary, the rest GPU
workers with every address unique; ``--format upstream`` writes upstream's flat format with
flags and old names, so hosts must be added to groups) and measures:

playbook  ``ansible-playbook playbooks/validate.yml`` with the repository's ansible.cfg,
          start to exit: what an operator waits for. Nothing is contacted.
floor     the same ``ansible-playbook`` on the same inventory with a play that does nothing:
          Ansible's own start-up and inventory parsing, which validation cannot remove.
checks    the filter alone, in process, over Ansible's real ``hostvars`` (templating
          included): the validation rules and the file re-read.

Usage:
  flock -o /tmp/chutes-heavy.lock benchmarks/validate_inventory.py [--hosts 50,200,400]
        [--runs 5] [--format ours|upstream]
The machine's load average is printed before and after; numbers taken under load say so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxkdB1P3h8xpGA5nXk3v0yAQbzLHGvJdV9tX1c2bB7X op@lt"
VALIDATOR = {
    "hotkey": "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ",
    "api": "https://api.chutes.ai",
    "registry": "registry.chutes.ai",
    "socket": "wss://ws.chutes.ai",
}
NOOP = [{"name": "Nothing", "hosts": "localhost", "gather_facts": False, "tasks": []}]


def _addresses(index: int) -> tuple[str, str, str]:
    """ansible_host, public IPv4, WireGuard address of host ``index`` (all unique)."""
    return (
        f"10.20.{index // 250}.{index % 250 + 1}",
        f"8.{index // 250 + 1}.{index % 250}.1",
        f"192.168.{(index + 1) // 256}.{(index + 1) % 256}",
    )


def inventory(size: int, fmt: str) -> dict[str, Any]:
    if fmt == "upstream":
        hosts: dict[str, Any] = {}
        for index in range(size):
            ssh, public, tunnel = _addresses(index)
            hosts[f"gpu-{index}" if index else "cpu-0"] = {
                "ansible_host": ssh,
                "external_ip": public,
                "wireguard_ip": tunnel,
                **({"is_primary": True, "gpu_enabled": False} if index == 0 else {}),
            }
        return {
            "all": {
                "vars": {"ssh_keys": [KEY], "user": "chutes", "is_primary": False,
                         "gpu_enabled": True, "registry_port": 30500},
                "hosts": hosts,
            }
        }  # fmt: skip
    gpu = {}
    for index in range(1, size):
        ssh, public, tunnel = _addresses(index)
        gpu[f"gpu-{index}"] = {
            "ansible_host": ssh,
            "chutes_external_ip": public,
            "wireguard_address": tunnel,
            "chutes_gpu_model": "h200",
            "chutes_gpu_count": 8,
        }
    ssh, public, tunnel = _addresses(0)
    primary = {"ansible_host": ssh, "chutes_external_ip": public, "wireguard_address": tunnel}
    return {
        "all": {
            "vars": {"base_admin_ssh_keys": [KEY], "chutes_validators": [VALIDATOR],
                     "mirrors_profile": "tuna"},
            "children": {
                "chutes_primary": {"hosts": {"cpu-0": primary}},
                "chutes_gpu": {"hosts": gpu},
                "chutes_workers": {"children": {"chutes_gpu": None}},
            },
        }
    }  # fmt: skip


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    return env


def run_playbook(playbook: Path, inv: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inv), str(playbook)],
        cwd=REPO, env=_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{playbook.name} failed on {inv}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed


CHECKS = """
import sys, time, yaml
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([sys.argv[2]])
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager
from ansible_collections.chutes.miner.plugins.filter.inventory_problems import inventory_problems
role = sys.argv[2] + "/ansible_collections/chutes/miner/roles/preflight/vars/"
gpus = yaml.safe_load(open(role + "gpus.yml"))["__preflight_gpus"]
names = yaml.safe_load(open(role + "main.yml"))["__preflight_upstream_names"]
loader = DataLoader()
inv = InventoryManager(loader=loader, sources=[sys.argv[1]])
hostvars = HostVars(inventory=inv, variable_manager=VariableManager(loader=loader, inventory=inv),
                    loader=loader)
start = time.perf_counter()
result = inventory_problems(hostvars, inv.get_groups_dict(), gpus, upstream_names=names,
                            sources=[sys.argv[1]])
print(time.perf_counter() - start, len(result["problems"]))
"""


def run_checks(inv: Path) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", CHECKS, str(inv), str(REPO / "collections")],
        cwd=REPO, env=_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds, problems = proc.stdout.split()
    if problems != "0":
        sys.exit(f"the generated inventory {inv} has {problems} problem(s)")
    return float(seconds)


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="50,200,400")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--format", choices=("ours", "upstream"), default="ours")
    args = parser.parse_args()
    sizes = [int(s) for s in args.hosts.split(",")]
    out(f"load average before: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        noop = Path(tmp) / "noop.yml"
        noop.write_text(yaml.safe_dump(NOOP))
        paths = {}
        for size in sizes:
            paths[size] = Path(tmp) / f"hosts-{size}.yml"
            paths[size].write_text(yaml.safe_dump(inventory(size, args.format)))
        times: dict[tuple[int, str], list[float]] = {}
        for _ in range(args.runs):
            for size in sizes:  # interleaved, so drifting load hits every size alike
                times.setdefault((size, "playbook"), []).append(
                    run_playbook(REPO / "playbooks/validate.yml", paths[size])
                )
                times.setdefault((size, "floor"), []).append(run_playbook(noop, paths[size]))
                times.setdefault((size, "checks"), []).append(run_checks(paths[size]))
    out(f"load average after: {os.getloadavg()[0]:.2f}")
    out(f"format: {args.format}; median of {args.runs} runs, seconds")
    out(f"{'hosts':>6} {'playbook':>9} {'floor':>7} {'validation':>11} {'checks':>7}")
    for size in sizes:
        play, floor, checks = (
            statistics.median(times[(size, k)]) for k in ("playbook", "floor", "checks")
        )
        out(f"{size:>6} {play:>9.2f} {floor:>7.2f} {play - floor:>11.2f} {checks:>7.2f}")


if __name__ == "__main__":
    main()
