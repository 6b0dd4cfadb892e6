"""Signature checks the stand-ins run, written from the runtime contract (§1.2) and nothing else.

The signed strings are built here and verified with bittensor-wallet's `Keypair.verify`
directly; nothing comes from `control_api.core.signing`, so a bug in the API's signing code
cannot be confirmed by the same code on the other side of the wire.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping

from bittensor_wallet import Keypair

VALIDATOR_NONCE_WINDOW_S = 600  # §1.2: validators accept nonces up to 600 s from their clock
_SIGNATURE = re.compile(r"[0-9a-f]{128}")  # §1.1: 64 bytes as lower-case hex, no 0x
_NONCE = re.compile(r"[0-9]+")


def sha256_hex(body: bytes) -> str:
    """`X` of a request with a body (§1.2)."""
    return hashlib.sha256(body).hexdigest()


def _sr25519_ok(ss58: str, message: str, signature: str) -> bool:
    if not _SIGNATURE.fullmatch(signature):
        return False
    try:
        return bool(Keypair(ss58_address=ss58).verify(message.encode(), bytes.fromhex(signature)))
    except Exception:  # noqa: BLE001 - a malformed address is a refusal, whatever the binding raises
        return False


def d2_valid(headers: Mapping[str, str], miner: str, x: str, now: float | None = None) -> bool:
    """D2 as a validator checks it: `{hotkey}:{nonce}:{X}` signed by the miner's hotkey."""
    hotkey = headers.get("X-Chutes-Hotkey", "")
    nonce = headers.get("X-Chutes-Nonce", "")
    signature = headers.get("X-Chutes-Signature", "")
    clock = time.time() if now is None else now
    return (
        hotkey == miner
        and bool(_NONCE.fullmatch(nonce))
        and abs(clock - int(nonce)) <= VALIDATOR_NONCE_WINDOW_S
        and _sr25519_ok(hotkey, f"{hotkey}:{nonce}:{x}", signature)
    )


def d1_valid(headers: Mapping[str, str], miner: str, signer: str, x: str) -> bool:
    """D1 as the bootstrap checks it (without its nonce window and replay cache, which the
    bootstrap's own tests cover): `{miner}:{validator}:{nonce}:{X}` signed by `signer`."""
    got_miner = headers.get("X-Chutes-Miner", "")
    got_signer = headers.get("X-Chutes-Validator", "")
    nonce = headers.get("X-Chutes-Nonce", "")
    signature = headers.get("X-Chutes-Signature", "")
    return (
        got_miner == miner
        and got_signer == signer
        and bool(_NONCE.fullmatch(nonce))
        and _sr25519_ok(signer, f"{got_miner}:{got_signer}:{nonce}:{x}", signature)
    )
