# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.wireguard_report``: the reachability matrix of the wireguard role."""

from __future__ import annotations

from typing import Any

from ansible_collections.chutes.miner.plugins.module_utils import wireguard_verify

DOCUMENTATION = r"""
name: wireguard_report
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: The WireGuard reachability matrix and the cause of every failing pair
description:
  - Used by the verify step of C(chutes.miner.wireguard). Each node pinged every other node
    over the tunnel and read its handshakes; from those output lines this builds the matrix
    printed on every run (C(ok), C(FAIL), C(-) for the node itself, C(*) when the path goes
    through the hub) and one line per failing pair with its likely cause in English and
    Chinese (closed UDP port in the security group, a node behind NAT that has not dialled in,
    a stale handshake, a hub that does not forward, a firewall on the interface).
options:
  _input:
    description: The node names, in the order the matrix lists them.
    type: list
    elements: str
    required: true
  probes:
    description: >-
      Per node, the lines its probe printed (C(ping <address> ok|fail), C(now <epoch>),
      C(hs <public key> <epoch>)); a node without lines counts as reaching nobody.
    type: dict
    required: true
  net:
    description: >-
      Per node, its C(address), C(public_key), C(endpoint) (empty behind NAT) and C(port).
    type: dict
    required: true
  hub:
    description: The hub node, through which nodes reach the peers they do not have.
    type: str
    required: true
  max_age:
    description: Seconds after which a handshake counts as broken.
    type: int
    required: true
  interface:
    description: The WireGuard interface name, for the firewall hint.
    type: str
    default: wg0
"""

EXAMPLES = r"""
- name: Show the reachability matrix and check every pair can talk
  ansible.builtin.assert:
    that: __report.failed | length == 0
    success_msg: "{{ __report.matrix }}"
    fail_msg: "{{ __report.matrix + __report.failed }}"
  vars:
    __report: >-
      {{ ['cpu-0', 'gpu-0'] | chutes.miner.wireguard_report(
           probes=__probes, net=__net, hub='cpu-0', max_age=300, interface='wg0') }}
"""

RETURN = r"""
_value:
  description: >-
    C(matrix), the lines of the matrix with a legend; C(failed), one line per failing pair
    (C(node -> peer (address): cause)), empty when every pair can talk.
  type: dict
"""


def wireguard_report(
    nodes: list[str],
    probes: dict[str, Any],
    net: dict[str, Any],
    hub: str,
    max_age: int,
    interface: str = "wg0",
) -> dict[str, list[str]]:
    """The report of ``wireguard_verify.report`` for these nodes and probe lines."""
    return wireguard_verify.report(
        [str(n) for n in nodes],
        {str(k): list(v or []) for k, v in dict(probes).items()},
        dict(net),
        str(hub),
        int(max_age),
        str(interface),
    )


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"wireguard_report": wireguard_report}
