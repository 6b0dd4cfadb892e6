"""Jinja test ``chutes.miner.ss58_valid``: is a string a valid SS58 account address?

A real check, not a pattern match: base58 decode, SS58 address-type prefix (one or
two bytes), and the 2-byte blake2b-512 checksum over ``b"SS58PRE" + prefix + key``.
Bittensor hotkeys and coldkeys use the generic Substrate prefix 42 (addresses start
with ``5``); ``network`` picks another prefix, ``network=None`` accepts any.
"""

from __future__ import annotations

import hashlib
from typing import Any

DOCUMENTATION = r"""
name: ss58_valid
author: chutes.miner developers
version_added: 0.1.0
short_description: Test for a valid SS58 (Substrate/Bittensor) account address
description:
  - Decodes the base58 string, checks the SS58 address-type prefix and the blake2b-512
    C(SS58PRE) checksum of a 32-byte account id.
options:
  _input:
    description: The address.
    type: str
    required: true
  network:
    description: Required SS58 prefix; C(None) accepts any. Bittensor uses 42.
    type: int
    default: 42
"""

EXAMPLES = r"""
- name: Refuse a corrupted validator hotkey
  ansible.builtin.assert:
    that: item.hotkey is chutes.miner.ss58_valid
  loop: "{{ chutes_validators }}"
"""

RETURN = r"""
_value:
  description: Whether the input is a valid SS58 account address.
  type: bool
"""

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_ACCOUNT_ID_LEN = 32
_CHECKSUM_LEN = 2
_PREFIX = b"SS58PRE"
BITTENSOR_NETWORK = 42


def b58decode(text: str) -> bytes:
    """Decode a base58 (Bitcoin alphabet) string; raise ValueError on a bad character."""
    num = 0
    for char in text:
        if char not in _INDEX:
            raise ValueError(f"invalid base58 character {char!r}")
        num = num * 58 + _INDEX[char]
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading_zeros + body


def ss58_decode(address: str) -> tuple[int, bytes]:
    """Return (network prefix, 32-byte account id); raise ValueError when invalid."""
    data = b58decode(address)
    if len(data) < 2:
        raise ValueError("too short")
    first = data[0]
    if first < 64:
        prefix_len, network = 1, first
    elif first < 128:
        second = data[1]
        prefix_len = 2
        network = ((first & 0b0011_1111) << 2) | (second >> 6) | ((second & 0b0011_1111) << 8)
    else:
        raise ValueError("reserved address type")
    if len(data) != prefix_len + _ACCOUNT_ID_LEN + _CHECKSUM_LEN:
        raise ValueError("not a 32-byte account address")
    body = data[: prefix_len + _ACCOUNT_ID_LEN]
    checksum = hashlib.blake2b(_PREFIX + body, digest_size=64).digest()[:_CHECKSUM_LEN]
    if checksum != data[-_CHECKSUM_LEN:]:
        raise ValueError("checksum mismatch")
    return network, body[prefix_len:]


def ss58_valid(value: Any, network: int | None = BITTENSOR_NETWORK) -> bool:
    """Jinja test body: True for a valid SS58 account address of ``network``."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return False
    try:
        decoded_network, _ = ss58_decode(value)
    except ValueError:
        return False
    return network is None or decoded_network == network


class TestModule:
    """Ansible test plugin entry point."""

    def tests(self) -> dict[str, Any]:
        return {"ss58_valid": ss58_valid}
