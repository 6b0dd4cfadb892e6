# Copyright: chutes.miner developers
# MIT License
"""Filter ``chutes.miner.wireguard_address_problems``: one node's WireGuard address checked by
the rules inventory validation uses (``plugin_utils/inventory_rules``), worded the same way."""

from __future__ import annotations

from typing import Any

from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_rules import (
    wireguard_address_problems as _problems,
)

DOCUMENTATION = r"""
name: wireguard_address_problems
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Problems of one node's WireGuard address, as inventory validation words them
description:
  - Checks O(_input) (C(wireguard_address)) and O(network) (C(wireguard_network)) with the
    schemas and the address rule of the inventory validation (C(playbooks/validate.yml)), that
    is a plain IPv4 address inside an IPv4 network with a prefix of 8-30, neither its network
    nor its broadcast address. The C(chutes.miner.wireguard) role uses it, so the rule exists
    once.
  - Returns one line per problem, English then Chinese; an empty list when there is none.
options:
  _input:
    description: The node's C(wireguard_address); C(none) when it is not set.
    type: raw
    required: true
  network:
    description: C(wireguard_network).
    type: raw
    required: true
  host:
    description: The node's inventory name, for the message.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Refuse a WireGuard address outside the tunnel network
  ansible.builtin.assert:
    that: __problems | length == 0
    fail_msg: "{{ __problems | join(' ') }}"
  vars:
    __problems: >-
      {{ wireguard_address | default(none)
         | chutes.miner.wireguard_address_problems(wireguard_network, inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: One C(<English> / <Chinese>) line per problem, with the fix in both languages.
  type: list
  elements: str
"""


def wireguard_address_problems(address: Any, network: Any, host: str = "") -> list[str]:
    return [f"{p.en} {p.fix_en} / {p.zh}{p.fix_zh}" for p in _problems(str(host), address, network)]


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"wireguard_address_problems": wireguard_address_problems}
