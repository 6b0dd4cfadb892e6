"""The environment for tests that run ansible-playbook on the in-tree collection."""

from __future__ import annotations

import os
from pathlib import Path

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
