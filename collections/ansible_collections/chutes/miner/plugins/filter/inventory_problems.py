"""Filter ``chutes.miner.inventory_problems``: every inventory mistake, found at once.

Called on the controller by ``chutes.miner.preflight`` (tasks_from: inventory) before any
host is contacted. The rules live in ``plugin_utils/inventory_rules`` (schemas per variable
in ``inventory_vars``, file checks in ``inventory_sources``); this filter only hands them
``hostvars`` (templated lazily, one variable at a time, so a broken template becomes a
reported problem) and the mirror catalog, and turns an unexpected failure into a problem
instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.chutes.miner.plugins.plugin_utils import inventory_rules
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_rules import (
    Result,
    problem,
    validate,
)
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_sources import (
    source_problems,
)

DOCUMENTATION = r"""
name: inventory_problems
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Validate a chutes.miner inventory and list every problem
description:
  - Checks every inventory variable against its schema (type, range, format), then the rules
    that span variables and hosts (groups, addresses, the cluster address plan, ports,
    validators, GPUs, mirror inputs), and re-reads the inventory files for duplicate keys and
    skipped sources.
  - Returns C(problems) and C(notices) (each with host, var, code, en, zh, fix_en, fix_zh), the
    effective group members (C(hosts), C(primary), C(gpu), C(workers)) and C(changes), the
    C(add_host) arguments of the hosts whose groups or variables must change (upstream flags
    and names).
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  groups:
    description: C(groups).
    type: dict
    required: true
  gpus:
    description: Supported GPU models, model name to a dict with C(vram_mib).
    type: dict
    required: true
  upstream_names:
    description: Upstream variable name to our name.
    type: dict
    default: {}
  nodeport_range:
    description: First and last NodePort.
    type: list
    default: [30000, 32767]
  upstream_compat:
    description: Honour upstream flags and names (C(chutes_upstream_compat)); checked as well.
    type: raw
    default: true
  sources:
    description: C(ansible_inventory_sources); re-read for duplicate keys and skipped files.
    type: list
    default: []
"""

EXAMPLES = r"""
- name: inventory | Find every inventory problem
  ansible.builtin.set_fact:
    __preflight_inventory: >-
      {{ hostvars | chutes.miner.inventory_problems(groups, gpus=__preflight_gpus,
         sources=ansible_inventory_sources) }}
"""

RETURN = r"""
_value:
  description: Dict with problems, notices, hosts, primary, gpu, workers, changes.
  type: dict
"""

_ROLES = Path(inventory_rules.__file__).resolve().parents[2] / "roles"


def _resolve(value: Any, names: Mapping[str, Any]) -> Any:
    """Replace whole-string ``{{ name }}`` references with the value of ``name``."""
    if isinstance(value, str) and value.startswith("{{") and value.endswith("}}"):
        return names.get(value[2:-2].strip(), value)
    if isinstance(value, dict):
        return {k: _resolve(v, names) for k, v in value.items()}
    return value


def mirrors_data(roles: Path = _ROLES) -> dict[str, Any] | None:
    """The mirrors role's catalog and resource defaults, to check mirror inputs up front."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        catalog = yaml.load((roles / "mirrors/vars/catalog.yml").read_text(), Loader=loader)  # noqa: S506
        constants = yaml.load((roles / "mirrors/vars/main.yml").read_text(), Loader=loader)  # noqa: S506
    except (OSError, yaml.YAMLError):
        return None
    defaults = _resolve(constants.get("__mirrors_resource_defaults") or {}, catalog)
    return {
        "catalog": catalog.get("__mirrors_catalog") or [],
        "profiles": catalog.get("__mirrors_profiles") or {},
        "upstream": catalog.get("__mirrors_upstream") or {},
        "defaults": defaults,
    }


def inventory_problems(
    hostvars: Mapping[str, Any],
    groups: Mapping[str, list[str]],
    gpus: Mapping[str, Any],
    upstream_names: Mapping[str, str] | None = None,
    nodeport_range: list[int] | None = None,
    upstream_compat: Any = True,
    sources: list[str] | None = None,
) -> dict[str, Any]:
    try:
        low, high = nodeport_range or (30000, 32767)
        result = validate(
            hostvars,
            groups,
            gpus,
            upstream_names=upstream_names,
            upstream_compat=upstream_compat,
            nodeport_range=(int(low), int(high)),
            mirrors=mirrors_data(),
        )
        result.problems[:0] = source_problems(sources or [], groups.get("all") or [])
    except Exception as exc:  # noqa: BLE001 - report, never a traceback
        error = f"{type(exc).__name__}: {exc}"[:200]
        failed = problem("rule_failed", "all", "", rule="inventory_problems", error=error)
        result = Result([failed], [], [], [], [], [], [])
    return result.as_dict()


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"inventory_problems": inventory_problems}
