# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.k8s_binaries_plan``: check the role's inputs, derive its addresses."""

from __future__ import annotations

from typing import Any

from ansible_collections.chutes.miner.plugins.module_utils import k8s_binaries

DOCUMENTATION = r"""
name: k8s_binaries_plan
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Check the inputs of chutes.miner.k8s_binaries and derive its addresses
description:
  - >-
    Lists every problem with the role's inputs at once (C(host), C(en), C(zh)): networks that
    overlap each other or a host's own addresses, a pod network too small for the nodes, a node
    address that is not on its host, groups, the play and removals that contradict each other,
    and malformed versions, ports, pins and switches.
  - Without problems it also returns C(service_ip) (the API server's Service address, the first
    of the service network), C(cluster_dns) (C(k8s_binaries_cluster_dns), else the tenth
    address) and C(vtep_mac) (node name to the MAC of its VXLAN device).
options:
  _input:
    description: The cluster-wide inputs, variable name to value.
    type: dict
    required: true
  nodes:
    description: Node name to C(node_ip), C(external_ip) and C(addresses) (its IPv4 addresses).
    type: dict
    required: true
  primary:
    description: Members of the primary group.
    type: list
    elements: str
    required: true
  in_play:
    description: Hosts of the play.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: validate | Check every input
  ansible.builtin.set_fact:
    __k8s_binaries_plan: >-
      {{ __k8s_binaries_settings | chutes.miner.k8s_binaries_plan(
           __k8s_binaries_net, groups['chutes_primary'], ansible_play_hosts_all) }}
"""

RETURN = r"""
_value:
  description: C(problems), and without problems C(service_ip), C(cluster_dns), C(vtep_mac).
  type: dict
"""


def k8s_binaries_plan(
    settings: dict[str, Any], nodes: dict[str, Any], primary: list[str], in_play: list[str]
) -> dict[str, Any]:
    """``{{ settings | chutes.miner.k8s_binaries_plan(nodes, primary, in_play) }}``."""
    return dict(
        k8s_binaries.plan(
            dict(settings),
            {str(k): dict(v) for k, v in nodes.items()},
            list(primary),
            list(in_play),
        )
    )


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"k8s_binaries_plan": k8s_binaries_plan}
