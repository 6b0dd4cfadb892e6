"""The SS58 check behind the ``chutes.miner.ss58_valid`` test plugin, with real addresses."""

from __future__ import annotations

import hashlib
import re

import pytest
from ansible_collections.chutes.miner.plugins.module_utils.ss58 import (
    _ALPHABET,
    b58decode,
    ss58_decode,
    ss58_valid,
)

# Real Bittensor / Substrate addresses (prefix 42): the upstream default validator,
# and the well-known development accounts Alice and Bob.
VALID = [
    "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ",
    "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
    "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
]
ALICE_POLKADOT = "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"  # prefix 0
ALICE_PUBLIC_KEY = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")


def _b58encode(data: bytes) -> str:
    num = int.from_bytes(data, "big")
    out = ""
    while num:
        num, rem = divmod(num, 58)
        out = _ALPHABET[rem] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _encode(network: int, key: bytes) -> str:
    if network < 64:
        prefix = bytes([network])
    else:
        prefix = bytes(
            [((network & 0b1111_1100) >> 2) | 0b0100_0000, (network >> 8) | ((network & 0b11) << 6)]
        )
    body = prefix + key
    checksum = hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2]
    return _b58encode(body + checksum)


@pytest.mark.parametrize("address", VALID)
def test_real_bittensor_addresses_are_valid(address: str) -> None:
    assert ss58_valid(address)
    assert ss58_decode(address)[0] == 42


def test_alice_decodes_to_her_public_key() -> None:
    assert ss58_decode("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")[1] == ALICE_PUBLIC_KEY
    assert ss58_decode(ALICE_POLKADOT) == (0, ALICE_PUBLIC_KEY)


def test_other_networks_need_their_prefix() -> None:
    assert not ss58_valid(ALICE_POLKADOT)  # Polkadot prefix 0, not Bittensor's 42
    assert ss58_valid(ALICE_POLKADOT, network=0)
    assert ss58_valid(ALICE_POLKADOT, network=None)


def test_two_byte_prefix_round_trip() -> None:
    address = _encode(1284, ALICE_PUBLIC_KEY)  # a network id above 63 uses two bytes
    assert ss58_decode(address) == (1284, ALICE_PUBLIC_KEY)
    assert ss58_valid(address, network=1284)
    assert not ss58_valid(address)


def test_encoder_matches_real_address() -> None:
    assert _encode(42, ALICE_PUBLIC_KEY) == VALID[1]


@pytest.mark.parametrize(
    "address",
    [
        "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcR",  # last character changed
        "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbc",  # truncated
        "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQQ",  # one character too many
        "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbc0",  # '0' is not base58
        "5dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ",  # case changed
        "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ ",  # trailing space
        "0x" + ALICE_PUBLIC_KEY.hex(),  # a hex public key, not an address
        "",
    ],
)
def test_corrupted_addresses_are_invalid(address: str) -> None:
    assert not ss58_valid(address)


@pytest.mark.parametrize("value", [None, 42, ["5Dt7"], {"hotkey": VALID[0]}])
def test_non_strings_are_invalid(value: object) -> None:
    assert not ss58_valid(value)


# Network ids at each edge of the one-byte (0-63) and two-byte (64-16383) forms: 256 encodes
# to a first byte of exactly 64, 65 and 257 set the top bits of the second byte.
@pytest.mark.parametrize("network", [0, 1, 42, 63, 64, 65, 127, 128, 255, 256, 257, 1284, 16383])
def test_every_prefix_width_round_trips(network: int) -> None:
    address = _encode(network, ALICE_PUBLIC_KEY)
    assert ss58_decode(address) == (network, ALICE_PUBLIC_KEY)
    assert ss58_valid(address, network=None)
    assert ss58_valid(address, network=network)


def _checksummed(body: bytes) -> bytes:
    return body + hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2]


# The reason in each ValueError, matched whole: it names what is wrong with the address.
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (bytes([42]), "too short"),
        (bytes([42, 1]), "not a 32-byte account address"),
        (bytes([0x80]) + ALICE_PUBLIC_KEY + b"\0\0", "reserved address type"),
        (bytes([0xFF]) + ALICE_PUBLIC_KEY + b"\0\0", "reserved address type"),
        (_checksummed(bytes([42]) + ALICE_PUBLIC_KEY[:31]), "not a 32-byte account address"),
        (_checksummed(bytes([42]) + ALICE_PUBLIC_KEY + b"\0"), "not a 32-byte account address"),
        (bytes([42]) + ALICE_PUBLIC_KEY + b"\0\0", "checksum mismatch"),
        (_checksummed(bytes([42]) + ALICE_PUBLIC_KEY)[:-1] + b"\0", "checksum mismatch"),
    ],
)
def test_decode_errors_name_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{reason}$"):
        ss58_decode(_b58encode(data))


def test_b58decode_keeps_leading_zeros() -> None:
    assert b58decode("11") == b"\0\0"
    assert b58decode("") == b""
    assert b58decode("1112") == b"\0\0\0\x01"
    assert b58decode("z") == bytes([57])
    assert b58decode("21") == bytes([58])


@pytest.mark.parametrize("char", ["0", "O", "I", "l", " ", "+"])
def test_b58decode_names_the_bad_character(char: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(f'invalid base58 character {char!r}')}$"):
        b58decode("5" + char)


def test_the_test_plugin_registers_the_check() -> None:
    from ansible_collections.chutes.miner.plugins.test.ss58_valid import TestModule

    assert TestModule().tests() == {"ss58_valid": ss58_valid}
