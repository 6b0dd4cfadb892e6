# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.path_parents``: a path and all its parents, root first."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: path_parents
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: A path and all its parents, root first
description:
  - Used by C(chutes.miner.preflight) to find the mount that holds a directory that may not
    exist yet. Empty path components are ignored.
options:
  _input:
    description: An absolute path.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Show the directories that may hold /var/snap
  ansible.builtin.debug:
    msg: "{{ '/var/snap' | chutes.miner.path_parents }}"   # ['/', '/var', '/var/snap']
"""

RETURN = r"""
_value:
  description: The paths, root first.
  type: list
  elements: str
"""


def path_parents(path: str) -> list[str]:
    """``/var/snap`` -> ``['/', '/var', '/var/snap']``."""
    parts = [p for p in str(path).split("/") if p]
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"path_parents": path_parents}
