"""The environment for tests that run ansible-playbook on the in-tree collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def ansible_env(local_temp: Path, **overrides: str) -> dict[str, str]:
    """This process's environment plus the repository's Ansible settings and the JSON callback
    (``ansible.posix.json``: one document with every task's result per host on stdout)."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=f"{REPO / 'collections'}:{Path.home() / '.ansible/collections'}",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(local_temp),
        ANSIBLE_REMOTE_TEMP=str(local_temp),
    )
    env.update(overrides)
    return env


def run_playbook(
    playbook: Path,
    inventory: Path,
    variables: Mapping[str, Any],
    *extra: str,
    env: Mapping[str, str] | None = None,
    limit: str = "cpu-0",
    timeout: float = 600,
) -> tuple[int, str]:
    """This venv's ansible-playbook on one host of ``inventory``, ``variables`` as one JSON
    extra-vars document, no colour; returns (rc, stdout + stderr)."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory)]
    argv += ["--limit", limit, "-e", json.dumps(dict(variables)), *extra, str(playbook)]
    done = subprocess.run(
        argv,
        cwd=REPO,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr
