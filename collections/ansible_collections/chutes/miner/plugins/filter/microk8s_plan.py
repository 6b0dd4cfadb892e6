# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.microk8s_plan``: the decisions of the microk8s role, in Python."""

from __future__ import annotations

from typing import Any

import yaml
from ansible_collections.chutes.miner.plugins.module_utils import microk8s

DOCUMENTATION = r"""
name: microk8s_plan
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Input checks, launch config, snap steps and join plan of the microk8s role
description:
  - C(check) (input the role's settings; arguments nodes, primary group, play hosts) lists every
    problem at once (C(host), C(en), C(zh)) and returns C(cluster_dns).
  - C(launch_config) (input the settings with C(mirrors_effective); arguments is_primary, node name)
    returns the content of C(/etc/microk8s.yaml).
  - C(bundle) (input the bundle's C(SHA256SUMS) text; arguments channel, pins, is_debian) returns
    the files to fetch in install order with their digests.
  - C(install) (input C(snap list) output; arguments snaps, bundle revisions, upgrade allowed)
    returns the snaps to ack and install, and problems.
  - C(addons) (input C(microk8s status --format yaml) output; argument the wanted addons, C(name) or
    C(name:args)) returns the wanted addons not enabled yet.
  - C(revision) (input an assertion file's text) returns its C(snap-revision).
  - C(join) (input the inventory's nodes; arguments primary, API members, clustered nodes, removals)
    returns C(join), C(lost), C(remove) and C(strays).
  - C(labels) (input node to wanted labels; argument node to current labels) returns per node the
    C(kubectl label) arguments.
  - C(localregistries) (input the validators; argument the port) returns the local registry names;
    C(localregistry_toml) (input one name) returns its C(hosts.toml) text.
options:
  _input:
    description: The input of the stage (see the description).
    type: raw
    required: true
  stage:
    description: Which decision to return.
    type: str
    required: true
    choices:
      - check
      - launch_config
      - bundle
      - install
      - addons
      - revision
      - join
      - labels
      - localregistries
      - localregistry_toml
  args:
    description: The stage's further arguments, positional (see the description).
    type: list
    elements: raw
"""

EXAMPLES = r"""
- name: configure | Render the launch configuration
  ansible.builtin.copy:
    content: >-
      {{ __microk8s_settings | chutes.miner.microk8s_plan('launch_config', true, 'cpu-0')
         | to_nice_yaml }}
    dest: /etc/microk8s.yaml
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The decision of the stage (see the description).
  type: raw
"""


def microk8s_plan(value: Any, stage: str, *args: Any) -> Any:
    """``{{ value | chutes.miner.microk8s_plan(stage, *args) }}``."""
    if stage == "check":
        nodes, primary, in_play = args
        return microk8s.check(
            dict(value),
            {str(k): dict(v) for k, v in dict(nodes).items()},
            list(primary),
            list(in_play),
        )
    if stage == "launch_config":
        is_primary, node = args
        return microk8s.launch_config(dict(value), bool(is_primary), str(node))
    if stage == "bundle":
        channel, pins, debian = args
        return microk8s.bundle_files(
            str(channel), microk8s.sha256sums(str(value)), dict(pins), bool(debian)
        )
    if stage == "install":
        snaps, revisions, upgrade = args
        return microk8s.install_steps(
            list(snaps), microk8s.snap_list(str(value)), dict(revisions), bool(upgrade)
        )
    if stage == "addons":
        (wanted,) = args
        return microk8s.missing_addons(yaml.safe_load(str(value)), [str(w) for w in wanted])
    if stage == "revision":
        return microk8s.assertion_revision(str(value))
    if stage == "join":
        primary, members, clustered, remove = args
        return microk8s.join_plan(
            list(value), str(primary), list(members), list(clustered), list(remove)
        )
    if stage == "labels":
        (now,) = args
        return microk8s.label_changes(dict(value), dict(now))
    if stage == "localregistries":
        (port,) = args
        return microk8s.localregistry_names(list(value), int(port))
    if stage == "localregistry_toml":
        return microk8s.localregistry_toml(str(value))
    raise ValueError(f"microk8s_plan: unknown stage {stage!r}")


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"microk8s_plan": microk8s_plan}
