# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Jinja test ``chutes.miner.ss58_valid``; the check lives in module_utils/ss58.py."""

from __future__ import annotations

from typing import Any

from ansible_collections.chutes.miner.plugins.module_utils.ss58 import ss58_valid

DOCUMENTATION = r"""
name: ss58_valid
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Test for a valid SS58 (Substrate/Bittensor) account address
description:
  - Decodes the base58 string, checks the SS58 address-type prefix and the blake2b-512
    C(SS58PRE) checksum of a 32-byte account id. A pattern match would accept a hotkey with
    one character changed; this test does not.
  - Anything that is not a string is not valid.
options:
  _input:
    description: The address.
    type: str
    required: true
  network:
    description: Required SS58 address-type prefix; C(None) accepts any. Bittensor uses 42.
    type: int
    default: 42
"""

EXAMPLES = r"""
- name: Refuse a corrupted validator hotkey
  ansible.builtin.assert:
    that: item.hotkey is chutes.miner.ss58_valid
  loop: "{{ chutes_validators }}"

- name: Accept a Polkadot address (prefix 0)
  ansible.builtin.assert:
    that: "'15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5' is chutes.miner.ss58_valid(network=0)"
"""

RETURN = r"""
_value:
  description: Whether the input is a valid SS58 account address of the wanted network.
  type: bool
"""


class TestModule:
    """Ansible test plugin entry point."""

    def tests(self) -> dict[str, Any]:
        return {"ss58_valid": ss58_valid}
