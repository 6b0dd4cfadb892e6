"""sr25519 signing strings and keys (runtime contract §1)."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Protocol

from bittensor_wallet import Keypair

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


class Signer(Protocol):
    @property
    def ss58_address(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def keypair_from_seed(seed_hex: str) -> Keypair:
    if not _HEX64.match(seed_hex):
        raise ValueError("seed must be 32 bytes of hex")
    seed = seed_hex if seed_hex.startswith("0x") else "0x" + seed_hex
    return Keypair.create_from_seed(seed)  # type: ignore[arg-type]  # accepts hex str


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def d1_message(miner: str, validator: str, nonce: str, x: str) -> bytes:
    return f"{miner}:{validator}:{nonce}:{x}".encode()


def d2_message(hotkey: str, nonce: str, x: str) -> bytes:
    return f"{hotkey}:{nonce}:{x}".encode()


def d2_headers(signer: Signer, x: str, nonce: int | None = None) -> dict[str, str]:
    """D2 headers (miner -> validator, socket auth, registry pulls)."""
    n = str(int(time.time()) if nonce is None else nonce)
    sig = signer.sign(d2_message(signer.ss58_address, n, x)).hex()
    return {"X-Chutes-Hotkey": signer.ss58_address, "X-Chutes-Nonce": n, "X-Chutes-Signature": sig}


def d1_headers(signer: Signer, x: str, nonce: int | None = None) -> dict[str, str]:
    """D1 headers with miner = validator = our hotkey (API -> bootstrap, tests as the CLI)."""
    n = str(int(time.time()) if nonce is None else nonce)
    me = signer.ss58_address
    sig = signer.sign(d1_message(me, me, n, x)).hex()
    return {
        "X-Chutes-Miner": me,
        "X-Chutes-Validator": me,
        "X-Chutes-Nonce": n,
        "X-Chutes-Signature": sig,
    }


def verify(ss58: str, message: bytes, signature: bytes) -> bool:
    """Verify raw or `<Bytes>`-wrapped; a bad ss58 is a failed check, never an exception.

    bittensor-wallet's `verify` itself accepts a signature over `<Bytes>message</Bytes>` (3.0.0
    and 4.1.1 checked, the ends of the allowed range), so one call covers both forms; the
    wrapped form is tested in tests/test_auth.py and tests/test_standin_signatures.py.
    """
    try:
        return bool(Keypair(ss58_address=ss58).verify(message, signature))
    except Exception:  # noqa: BLE001 - the binding raises assorted types on bad input
        return False
