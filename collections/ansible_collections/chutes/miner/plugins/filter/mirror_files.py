# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.mirror_files``: which files the mirrors role writes and restores."""

from __future__ import annotations

from typing import Any

from ansible_collections.chutes.miner.plugins.module_utils import mirrors_files

DOCUMENTATION = r"""
name: mirror_files
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Decide which files the mirrors role writes, restores and keeps
description:
  - From the selection and the plan, lists the files to write (each with its template),
    the files to set aside, the backups to restore, and the paths whose change needs
    C(apt-get update). The result feeds C(chutes.miner.mirror_state) with C(state=apply).
  - Resources without a chosen mirror are restored (profile C(none), C(on_failure=upstream))
    or left alone (C(on_failure=warn)).
options:
  _input:
    description: The selection from C(chutes.miner.mirror_select).
    type: dict
    required: true
  plan:
    description: The plan from C(chutes.miner.mirror_plan).
    type: dict
    required: true
  microk8s:
    description: >-
      Whether MicroK8s is installed, so its C(certs.d) directory gets registry mirrors
      too.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Decide which files to write
  ansible.builtin.set_fact:
    __mirrors_files: >-
      {{ __mirrors_selection
         | chutes.miner.mirror_files(__mirrors_plan, __mirrors_inspect.microk8s) }}
"""

RETURN = r"""
_value:
  description: C(write), C(remove), C(restore), C(globs), C(keep) and C(apt_paths).
  type: dict
"""


def mirror_files(
    selection: dict[str, Any], plan: dict[str, Any], microk8s: bool = False
) -> dict[str, Any]:
    """``{{ selection | chutes.miner.mirror_files(plan, microk8s) }}``."""
    return dict(mirrors_files.files_plan(plan, selection, microk8s))


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"mirror_files": mirror_files}
