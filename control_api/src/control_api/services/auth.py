"""Inbound D1 verification (runtime contract §1.3): pure checks, replay via an injected store."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from control_api.core.signing import d1_message, verify

_NONCE = re.compile(r"^[0-9]{1,12}$")
_SIG = re.compile(r"^[0-9a-fA-F]{128}$")
WINDOW_S = 30
REPLAY_TTL_S = 61
HEADERS = ("X-Chutes-Miner", "X-Chutes-Validator", "X-Chutes-Nonce", "X-Chutes-Signature")


class AuthError(Exception):
    """Rejected request; `reason` is for logs only, the client sees a fixed text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReplayStore(Protocol):
    async def first_use(self, key: str, ttl_s: int) -> bool: ...


@dataclass(frozen=True)
class Verified:
    signer: str
    nonce: int


def check_headers(
    headers: Mapping[str, str],
    *,
    x: str,
    miner_ss58: str,
    allowed_signers: frozenset[str],
    now: int,
) -> tuple[Verified, str]:
    """Steps 1-6; returns the verified identity and the replay key. Raises AuthError."""
    values = [headers.get(h, "") for h in HEADERS]
    if not all(values):
        raise AuthError("missing header")
    miner, validator, nonce, signature = values
    if not _NONCE.match(nonce):
        raise AuthError("malformed nonce")
    if not _SIG.match(signature):
        raise AuthError("malformed signature")
    if not hmac.compare_digest(miner.encode(), miner_ss58.encode()):
        raise AuthError("wrong miner")
    if validator not in allowed_signers:
        raise AuthError("signer not allowed")
    age = now - int(nonce)
    if not -WINDOW_S < age < WINDOW_S:
        raise AuthError("nonce outside window")
    if not verify(validator, d1_message(miner, validator, nonce, x), bytes.fromhex(signature)):
        raise AuthError("bad signature")
    return Verified(validator, int(nonce)), f"replay:{validator}:{nonce}:{signature.lower()}"


async def authenticate(
    headers: Mapping[str, str],
    *,
    x: str,
    miner_ss58: str,
    allowed_signers: frozenset[str],
    now: int,
    replay: ReplayStore,
) -> Verified:
    verified, key = check_headers(
        headers, x=x, miner_ss58=miner_ss58, allowed_signers=allowed_signers, now=now
    )
    if not await replay.first_use(key, REPLAY_TTL_S):
        raise AuthError("replayed")
    return verified
