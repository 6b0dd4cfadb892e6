# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.mirror_plan``: the probe plan of the mirrors role for one host."""

from __future__ import annotations

from typing import Any

from ansible_collections.chutes.miner.plugins.module_utils.mirrors_plan import (
    PlanRequest,
    build_plan,
)

DOCUMENTATION = r"""
name: mirror_plan
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Resolve a mirrors profile and overrides into candidates and probes
description:
  - Used by the C(chutes.miner.mirrors) role before anything changes. Resolves the profile,
    the operator's overrides and custom profile against the mirror catalog for one host
    (distribution, release, architecture) into per-resource settings, candidate mirrors and
    the probes that check them.
  - Invalid input does not raise; it is listed in C(errors) (English and Chinese) so the role
    can refuse it with one message.
options:
  _input:
    description: The mirror catalog (C(roles/mirrors/vars/catalog.yml)), a list of mirrors.
    type: list
    elements: dict
    required: true
  profiles:
    description: Profile name to the catalog mirror ids it prefers, per resource.
    type: dict
    required: true
  upstream:
    description: Upstream (default) URLs per resource.
    type: dict
    required: true
  defaults:
    description: Default settings per resource.
    type: dict
    required: true
  profile:
    description: The wanted profile.
    type: str
    required: true
    choices: [none, auto, tuna, ustc, aliyun, huawei, tencent, custom, airgap]
  overrides:
    description: Per-resource settings that replace the defaults (C(mirrors_overrides)).
    type: dict
    default: {}
  custom:
    description: The candidates of profile C(custom) (C(mirrors_custom_profile)).
    type: dict
    default: {}
  host:
    description: Facts of the host (distribution, version, codename, arch, apt origin).
    type: dict
    default: {}
  on_failure:
    description: What a resource without a healthy candidate does.
    type: str
    default: fail
    choices: [fail, upstream, warn]
  restore_mode:
    description: How profile C(none) puts files back (from the backups, or canonical files).
    type: str
    default: backup
    choices: [backup, canonical]
  catalog_version:
    description: Version of the catalog, part of the plan hash.
    type: str
    default: ""
  require_digests:
    description: >-
      Registry mirrors get C(pull) only, so tags resolve upstream and mirrors serve
      digests.
    type: bool
    default: false
  blocked:
    description: Upstream host names that must never be probed or written.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Build the plan from profile, overrides and catalog
  ansible.builtin.set_fact:
    __mirrors_plan: >-
      {{ __mirrors_catalog | chutes.miner.mirror_plan(
           profiles=__mirrors_profiles, upstream=__mirrors_upstream,
           defaults=__mirrors_resource_defaults, profile=mirrors_profile,
           overrides=mirrors_overrides, host=__mirrors_host) }}
"""

RETURN = r"""
_value:
  description: >-
    The plan, with C(profile), C(errors) (each with C(en) and C(zh)), C(resources),
    C(probes) (for C(chutes.miner.mirror_probe)), C(hash), C(upstream), C(host) and
    C(on_failure).
  type: dict
"""


def mirror_plan(
    catalog: list[dict[str, Any]],
    profiles: dict[str, Any],
    upstream: dict[str, Any],
    defaults: dict[str, Any],
    profile: str,
    **options: Any,
) -> dict[str, Any]:
    """``{{ catalog | chutes.miner.mirror_plan(profiles=..., profile=..., ...) }}``."""
    request = PlanRequest(catalog, profiles, upstream, defaults, profile=profile, **options)
    return dict(build_plan(request))


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"mirror_plan": mirror_plan}
