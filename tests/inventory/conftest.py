"""Fixtures for the inventory suite: import path for the in-tree collection, and lab nodes.

``inventory_nodes`` gives three reachable nodes (cpu-0, gpu-0, gpu-1) whose /etc must stay
unchanged. By default they are containers of the lab image started here (one set per xdist
worker, on their own podman network): the shared lab (``lab_nodes`` of tests/conftest.py) is
converged by other tests and sessions at the same time, which changes /etc under the
checksums (measured: 7 of 26 cases failed while a site.yml run converged the lab).
``CHUTES_INVENTORY_SUITE_NODES=lab`` runs the suite against the shared lab instead, when
nothing else converges it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

HOSTS = ("cpu-0", "gpu-0", "gpu-1")
_SSH = (
    "ssh",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
)


@dataclass(frozen=True)
class Node:
    name: str
    address: str


@dataclass(frozen=True)
class Nodes:
    nodes: tuple[Node, ...]
    key: Path

    def ssh(self, node: Node, command: str) -> str:
        proc = subprocess.run(
            [*_SSH, "-i", str(self.key), f"root@{node.address}", command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def etc_checksums(self) -> dict[str, str]:
        """A checksum of every file under /etc, per node (the proof that nothing changed)."""
        listing = "find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum"
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            sums = pool.map(lambda node: self.ssh(node, listing).split()[0], self.nodes)
        return dict(zip((n.name for n in self.nodes), sums, strict=True))


def _podman(*args: str) -> str:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def _from_lab_inventory(path: Path, key: Path) -> Nodes:
    data = yaml.safe_load(path.read_text())
    found: dict[str, str] = {}

    def walk(group: dict[str, Any]) -> None:
        for name, host_vars in (group.get("hosts") or {}).items():
            if name in HOSTS:
                found[name] = str((host_vars or {}).get("ansible_host", name))
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(data.get("all", data))
    return Nodes(tuple(Node(h, found[h]) for h in HOSTS), key)


@pytest.fixture(scope="session")
def inventory_nodes(request: pytest.FixtureRequest) -> Iterator[Nodes]:
    key = Path(os.environ.get("CHUTES_LAB_KEY", "/tmp/chutes-miner-lab/id_ed25519"))
    if os.environ.get("CHUTES_INVENTORY_SUITE_NODES") == "lab":
        lab_inventory = request.getfixturevalue("lab_nodes")
        yield _from_lab_inventory(Path(str(lab_inventory)), key)
        return

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    network = f"inventory-suite-{worker}"
    names = [f"inventory-{worker}-{h}" for h in HOSTS]
    image = os.environ.get("CHUTES_LAB_IMAGE", "localhost/chutes-miner-lab:bookworm")
    for name in names:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)
    subprocess.run(["podman", "network", "rm", network], capture_output=True, check=False)
    _podman("network", "create", "--label", "chutes-miner-lab=inventory-suite", network)
    try:
        for name in names:
            _podman(
                "run", "-d", "--name", name, "--hostname", name, "--network", network,
                "--systemd=always", "--privileged", "--label", "chutes-miner-lab=inventory-suite",
                "-v", f"{key}.pub:/root/.ssh/authorized_keys:ro", image,
            )  # fmt: skip
        address = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
        nodes = Nodes(
            tuple(
                Node(h, _podman("inspect", n, "-f", address))
                for h, n in zip(HOSTS, names, strict=True)
            ),
            key,
        )
        deadline = time.monotonic() + 90
        for node in nodes.nodes:
            while True:
                probe = subprocess.run(
                    [*_SSH, "-i", str(key), "-o", "ConnectTimeout=3", f"root@{node.address}", ":"],  # noqa: E501
                    capture_output=True,
                    check=False,
                )
                if probe.returncode == 0:
                    break
                assert time.monotonic() < deadline, f"{node.name}: sshd did not come up"
                time.sleep(1)
        yield nodes
    finally:
        for name in names:
            subprocess.run(
                ["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False
            )
        subprocess.run(["podman", "network", "rm", network], capture_output=True, check=False)
