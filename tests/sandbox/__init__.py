"""Namespaced copy-on-write test nodes (tests/sandbox/run.sh) for running roles for real with
the chroot connection, and the stand-ins they need installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ansible_env import REPO, ansible_env

RUN = Path(__file__).resolve().parent / "run.sh"
PORT = 8717  # run.sh serves WORK/www here

needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"),
    reason="needs root and unshare for the namespaced test nodes",
)


def install(work: Path, source: Path, dest: str, node: str = "all") -> None:
    """Put a stand-in script into the nodes' roots at ``dest``; a Python one is run by this
    Python (its libraries, PyYAML included), a shell one keeps its shebang."""
    target = work / "setup" / node / dest.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = source.read_text().splitlines(keepends=True)
    if "python" in lines[0]:
        lines[0] = f"#!{sys.executable}\n"
    target.write_text("".join(lines))
    target.chmod(0o755)


def inventory_hosts(work: Path, nodes: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: {"ansible_host": str(work / "roots" / name)} for name in nodes}


def play(
    work: Path, nodes: dict[str, str], inventory: Path, playbook: Path, *args: str
) -> tuple[int, dict[str, Any], str]:
    """ansible-playbook (JSON callback) against the nodes; returns rc, report, output tail."""
    env = ansible_env(work / "tmp", ANSIBLE_REMOTE_TEMP="/tmp/.ansible-standin")
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), *args]
    specs = [f"{n}={ip}" for n, ip in nodes.items()]
    result = subprocess.run(
        ["unshare", "--mount", "--net", "--propagation", "private", "bash", str(RUN), str(work),
         *specs, "--", *command, str(playbook)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.returncode, report, result.stdout[-4000:] + result.stderr[-4000:]


def written(work: Path, node: str, path: str) -> Path:
    """A file as the node left it (the overlay's upper layer keeps it after the run)."""
    return work / "upper" / node / path.lstrip("/")


def calls(work: Path, node: str, log: str) -> list[dict[str, Any]]:
    """The JSON lines a stand-in recorded in ``log`` on the node."""
    path = written(work, node, log)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def failed_msgs(report: dict[str, Any]) -> str:
    msgs = []
    for play_ in report.get("plays", []):
        for task in play_["tasks"]:
            for res in task["hosts"].values():
                if res.get("failed"):
                    msgs.append(str(res.get("msg", "")))
    return "\n".join(msgs)


def tasks(report: dict[str, Any], host: str) -> dict[str, dict[str, Any]]:
    """Task name (without the role prefix) -> the host's result, last run wins."""
    out = {}
    for play_ in report.get("plays", []):
        for task in play_["tasks"]:
            out[task["task"]["name"].split(" : ", 1)[-1]] = task["hosts"].get(host, {})
    return out
