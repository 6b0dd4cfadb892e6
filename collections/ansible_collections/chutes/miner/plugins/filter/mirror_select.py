# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.mirror_select``: pick mirrors from the probe results."""

from __future__ import annotations

from typing import Any

from ansible_collections.chutes.miner.plugins.module_utils import mirrors

DOCUMENTATION = r"""
name: mirror_select
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Choose a mirror per resource from the probe results
description:
  - Takes the C(results) of C(chutes.miner.mirror_probe) and, per resource, the first healthy
    candidate in plan order (every healthy one for registries, NTP and DNS).
  - Resources with no healthy candidate are listed in C(failed) with the O(on_failure) action.
  - Also builds the report table, with a hint in English and Chinese for each failure.
options:
  _input:
    description: The C(results) list returned by C(chutes.miner.mirror_probe).
    type: list
    elements: dict
    required: true
  plan:
    description: The plan from C(chutes.miner.mirror_plan).
    type: dict
    required: true
  on_failure:
    description: What a resource without a healthy candidate does.
    type: str
    default: fail
    choices: [fail, upstream, warn]
"""

EXAMPLES = r"""
- name: Choose the first healthy candidate per resource
  ansible.builtin.set_fact:
    __mirrors_selection: >-
      {{ __mirrors_probe.results | chutes.miner.mirror_select(__mirrors_plan, 'fail') }}
"""

RETURN = r"""
_value:
  description: >-
    C(chosen) (group to the chosen candidates), C(failed) (group to the on_failure action),
    C(rows) (one per probed candidate) and C(table) (the same rows as text).
  type: dict
"""


def mirror_select(
    results: list[dict[str, Any]], plan: dict[str, Any], on_failure: str = "fail"
) -> dict[str, Any]:
    """``{{ probe.results | chutes.miner.mirror_select(plan, on_failure) }}``."""
    return dict(mirrors.select(plan, results, on_failure))


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"mirror_select": mirror_select}
