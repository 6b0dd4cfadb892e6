"""Shared fixtures for the repository's tests.

``control_plane`` is a real Kubernetes API server (etcd, kube-apiserver, kube-controller-manager
as local processes, RBAC on), one per pytest worker: tests/k8s/README.md.

``lab_nodes`` starts the lab (``tests/lab/lab.sh nodes``: lab-mirror, cpu-0, gpu-0, gpu-1)
once per session and yields the lab inventory path. A lab that was already up (a developer's
``make lab``) is left running; a lab the fixture started is removed when the last pytest
worker using it finishes (the users' PIDs under a file lock, so xdist workers share it and a
killed run does not keep it alive).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ansible.plugins.loader import init_plugin_loader

from tests.ansible_env import REPO
from tests.k8s.controlplane import ControlPlane, pid_alive, session_fixture

# One way to import the collection in every test process: Ansible's collection finder, set up
# before any test imports `ansible_collections.chutes.miner`. A test that sets it up later (to
# render templates with lookups) would otherwise break imports of the collection's plugins in
# tests that happen to run after it in the same worker.
init_plugin_loader([str(REPO / "collections")])
LAB_SH = REPO / "tests" / "lab" / "lab.sh"
LAB_INVENTORY = REPO / "inventories" / "lab" / "inventory.yml"


def _lab_dir() -> Path:
    return Path(os.environ.get("CHUTES_LAB_DIR", "/tmp/chutes-miner-lab"))


@contextmanager
def _locked_state() -> Iterator[dict[str, list[int]]]:
    """The fixture's shared state, read and written under a lock: ``users`` (PIDs of the
    sessions using the lab) and ``owned`` ([1] when a fixture started the lab)."""
    lab_dir = _lab_dir()
    lab_dir.mkdir(parents=True, exist_ok=True)
    state_file = lab_dir / "pytest-lab.json"
    with open(lab_dir / "pytest-lab.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state: dict[str, list[int]] = json.loads(state_file.read_text())
        except (FileNotFoundError, ValueError):
            state = {"users": [], "owned": []}
        state["users"] = [pid for pid in state.get("users", []) if pid_alive(pid)]
        state.setdefault("owned", [])
        yield state
        state_file.write_text(json.dumps(state))


def _lab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAB_SH), *args], cwd=REPO, check=check, text=True, capture_output=True, timeout=900
    )


@pytest.fixture(scope="session")
def lab_nodes() -> Iterator[Path]:
    """Start the lab nodes (idempotent) and yield ``inventories/lab/inventory.yml``."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the lab needs it (tests/lab/setup-host.sh)")
    with _locked_state() as state:
        if not state["users"]:
            state["owned"] = [] if _lab("is-up", check=False).returncode == 0 else [1]
        started = _lab("nodes", check=False)
        if started.returncode != 0:
            pytest.fail(f"tests/lab/lab.sh nodes failed:\n{started.stdout}\n{started.stderr}")
        state["users"].append(os.getpid())
    try:
        yield LAB_INVENTORY
    finally:
        with _locked_state() as state:
            state["users"] = [pid for pid in state["users"] if pid != os.getpid()]
            if not state["users"] and state["owned"]:
                _lab("down", check=False)
                state["owned"] = []


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A Kubernetes control plane for this worker (tests/k8s/README.md); fails, never skips,
    when the binaries are missing (`make k8s-bin`)."""
    yield from session_fixture()
