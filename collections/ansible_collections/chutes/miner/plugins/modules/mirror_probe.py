#!/usr/bin/python
# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Probe mirror candidates in parallel from the managed host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: mirror_probe
short_description: Probe mirror candidates in parallel, with content checks
description:
  - Runs every probe of a plan built by the C(chutes.miner.mirror_plan) filter in
    parallel, each bounded by O(timeout), and reports health, status, latency and
    the reason of each failure.
  - Read-only; never reports changed. With O(recorded), only the recorded choice is
    re-checked, and everything is probed again when one of them fails.
options:
  probes:
    description: Probe specs (C(key), C(kind), C(url) and kind-specific keys).
    type: list
    elements: dict
    required: true
  timeout:
    description: Seconds per probe.
    type: float
    default: 10
  recorded:
    description: Probe keys of the recorded choice to re-check first.
    type: list
    elements: str
    default: []
  workers:
    description: Parallel probes at most.
    type: int
    default: 32
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Probe candidates
  chutes.miner.mirror_probe:
    probes: "{{ __mirrors_plan.probes }}"
    timeout: 5
"""

RETURN = r"""
mode:
  description: C(recorded) when the recorded choice passed its re-check, else C(full).
  type: str
  returned: always
results:
  description: One entry per probe (key, healthy, status, reason, warning, latency_ms).
  type: list
  returned: always
elapsed_ms:
  description: Wall time of the whole batch.
  type: int
  returned: always
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.module_utils.mirror_probing import probe_with_record


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "probes": {"type": "list", "elements": "dict", "required": True},
            "timeout": {"type": "float", "default": 10},
            "recorded": {"type": "list", "elements": "str", "default": []},
            "workers": {"type": "int", "default": 32},
        },
        supports_check_mode=True,
    )
    start = time.monotonic()
    mode, results = probe_with_record(
        module.params["probes"],
        module.params["recorded"],
        module.params["timeout"],
        module.params["workers"],
    )
    module.exit_json(
        changed=False, mode=mode, results=results, elapsed_ms=int((time.monotonic() - start) * 1000)
    )


if __name__ == "__main__":
    main()
