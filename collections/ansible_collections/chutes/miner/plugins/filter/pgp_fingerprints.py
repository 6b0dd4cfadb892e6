# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.pgp_fingerprints``: fingerprints of an armored OpenPGP key."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.chutes.miner.plugins.module_utils import pgp

DOCUMENTATION = r"""
name: pgp_fingerprints
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Primary-key fingerprints of an ASCII-armored OpenPGP key
description:
  - Pure Python, on the controller (no C(gpg) needed). Returns the v4 fingerprint of every
    primary key in the armored text, in order; subkeys are not listed.
  - Bad armor, a wrong CRC-24 checksum or a key version other than 4 is an error.
options:
  _input:
    description: The armored key (C(-----BEGIN PGP PUBLIC KEY BLOCK-----) ...).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse a vendored key that is not exactly the pinned one
  ansible.builtin.assert:
    that:
      - >-
        lookup('ansible.builtin.file', 'keys/cuda-archive-keyring.asc')
        | chutes.miner.pgp_fingerprints == ['EB693B3035CD5710E231E123A4B469963BF863CC']
"""

RETURN = r"""
_value:
  description: Upper-case hexadecimal fingerprints, one per primary key.
  type: list
  elements: str
"""


def pgp_fingerprints(armored: str) -> list[str]:
    """``{{ lookup('file', key) | chutes.miner.pgp_fingerprints }}``."""
    try:
        return list(pgp.pgp_fingerprints(str(armored)))
    except ValueError as exc:
        raise AnsibleFilterError(f"pgp_fingerprints: {exc}") from exc


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"pgp_fingerprints": pgp_fingerprints}
