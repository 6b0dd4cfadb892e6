# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.mirror_effective``: the ``mirrors_effective`` fact."""

from __future__ import annotations

from typing import Any

from ansible_collections.chutes.miner.plugins.module_utils import mirrors

DOCUMENTATION = r"""
name: mirror_effective
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Build the mirrors_effective fact other roles read
description:
  - Turns the selection of C(chutes.miner.mirror_select) into C(mirrors_effective), the only
    mirrors value other roles read. An empty value means the upstream default.
options:
  _input:
    description: The selection from C(chutes.miner.mirror_select).
    type: dict
    required: true
  plan:
    description: The plan from C(chutes.miner.mirror_plan).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Export the effective choice
  ansible.builtin.set_fact:
    mirrors_effective: "{{ __mirrors_selection | chutes.miner.mirror_effective(__mirrors_plan) }}"
"""

RETURN = r"""
_value:
  description: >-
    C(profile), C(apt), C(cuda_repo), C(nct_repo), C(pypi_index), C(registries),
    C(registry_upstreams), C(files_prefix), C(artifact_server), C(k8s_binaries),
    C(k8s_binaries_upstream), C(hf_endpoint), C(ntp), C(dns), C(dns_keep_link), C(snap),
    C(workload_env), C(workload_env_file), C(workload_configmap) and C(failed).
  type: dict
"""


def mirror_effective(selection: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """``{{ selection | chutes.miner.mirror_effective(plan) }}``."""
    return dict(mirrors.effective(plan, selection))


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"mirror_effective": mirror_effective}
