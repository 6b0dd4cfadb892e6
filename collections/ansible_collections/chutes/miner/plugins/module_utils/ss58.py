# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""SS58 account addresses (Substrate, Bittensor): decode and check, without dependencies.

A real check, not a pattern match: base58 decode, SS58 address-type prefix (one or
two bytes), and the 2-byte blake2b-512 checksum over ``b"SS58PRE" + prefix + key``.
Bittensor hotkeys and coldkeys use the generic Substrate prefix 42 (addresses start
with ``5``); ``network`` picks another prefix, ``network=None`` accepts any.
"""

from __future__ import annotations

import hashlib
from typing import Any

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
    """True for a valid SS58 account address of ``network`` (any network when None)."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return False
    try:
        decoded_network = ss58_decode(value)[0]
    except ValueError:
        return False
    return network is None or decoded_network == network
