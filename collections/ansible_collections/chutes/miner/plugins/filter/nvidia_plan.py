# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.nvidia_plan``: what the nvidia role does on one host, and why not."""

from __future__ import annotations

from typing import Any

from ansible_collections.chutes.miner.plugins.module_utils import nvidia

DOCUMENTATION = r"""
name: nvidia_plan
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Decide the NVIDIA driver install, holds and reboot of one host
description:
  - C(stage=detect) checks the inputs against what the host has and returns C(problems) (each
    with C(en) and C(zh)), C(mode) (C(install) or C(preinstalled)), C(install) (apt package specs),
    C(remove) (packages of another driver branch, only with C(nvidia_driver_replace)), C(unhold),
    C(fabricmanager) (whether this host gets fabric manager), C(smi_version) and C(warnings).
  - C(stage=fabricmanager) returns the fabric manager package spec pinned to the installed driver's
    version (empty when none is wanted).
  - C(stage=after) returns C(driver_version), C(hold) (packages of the branch still to hold),
    C(stale) (the loaded kernel module is not the installed driver), C(reboot) (stale and reboots
    allowed) and C(problems).
  - Packages are matched by exact names of one branch, never by a pattern over nvidia or cuda.
options:
  _input:
    description:
      - What the role read on the host. C(dpkg) (output of
        C(dpkg-query -W -f '${Package}\t${Version}\t${Status}\n')), C(distribution), C(smi)
        (C(rc), C(stdout) of C(nvidia-smi --query-gpu=driver_version --format=csv,noheader)),
        C(nvswitches), C(apt_uris), C(cuda_repo), C(loaded) (version of the loaded module),
        C(fabricmanager).
    type: dict
    required: true
  settings:
    description: The role's inputs, variable name to value.
    type: dict
    required: true
  stage:
    description: Which decision to return.
    type: str
    choices: [detect, fabricmanager, after]
    default: detect
"""

EXAMPLES = r"""
- name: detect | Decide what to do on this host
  ansible.builtin.set_fact:
    __nvidia_plan: "{{ __nvidia_host | chutes.miner.nvidia_plan(__nvidia_settings) }}"
"""

RETURN = r"""
_value:
  description: The decision of the stage (see the description); C(fabricmanager) returns a string.
  type: raw
"""


def nvidia_plan(host: dict[str, Any], settings: dict[str, Any], stage: str = "detect") -> Any:
    """``{{ host | chutes.miner.nvidia_plan(settings, stage) }}``."""
    facts = dict(host)
    packages = nvidia.parse_dpkg(str(facts.get("dpkg", "")))
    settings = dict(settings)
    if stage == "detect":
        return nvidia.plan(settings, {**facts, "packages": packages})
    want_fm = bool(facts.get("fabricmanager"))
    if stage == "fabricmanager":
        return nvidia.fabricmanager_install(settings, packages, want_fm)
    if stage == "after":
        return nvidia.after_install(settings, packages, str(facts.get("loaded", "")), want_fm)
    raise ValueError(f"nvidia_plan: unknown stage {stage!r}")


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"nvidia_plan": nvidia_plan}
