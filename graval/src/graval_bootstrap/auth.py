"""Inbound D1 verification (runtime contract §1.3): headers, nonce window, sr25519, replay."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from bittensor_wallet import Keypair
from bittensor_wallet.utils import is_valid_ss58_address

H_MINER = "x-chutes-miner"
H_VALIDATOR = "x-chutes-validator"
H_NONCE = "x-chutes-nonce"
H_SIGNATURE = "x-chutes-signature"

NONCE_WINDOW_S = 30
REPLAY_TTL_S = 61
_NONCE_RE = re.compile(r"[0-9]{1,12}")
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{128}")


class AuthError(Exception):
    """Verification failed; `reason` is short, fixed text that holds no request data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


REPLAY_MAX_ENTRIES = 65536
ReplayKey = tuple[str, str, bytes]


class ReplayCache:
    """In-process, bounded map of seen (signer, nonce, signature bytes) with a TTL.

    When full, the oldest entries are evicted; an entry younger than the nonce window can
    only be evicted by `max_entries` newer requests, far beyond what one bootstrap serves.
    """

    def __init__(
        self,
        ttl_s: float = REPLAY_TTL_S,
        max_entries: int = REPLAY_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[ReplayKey, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: ReplayKey) -> bool:
        """Record `key` atomically; return False when it was already recorded and unexpired."""
        now = self._clock()
        with self._lock:
            while self._seen:
                oldest_key, expires = next(iter(self._seen.items()))
                if expires > now and len(self._seen) < self._max:
                    break
                del self._seen[oldest_key]
            if key in self._seen:
                return False
            self._seen[key] = now + self._ttl
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)


@dataclass(frozen=True)
class Verifier:
    """D1 verification for one bootstrap: our hotkey and the signers a route accepts."""

    miner_hotkey: str
    replay: ReplayCache
    clock: Callable[[], float] = time.time

    def verify(self, headers: Mapping[str, str], purpose: str, signers: Collection[str]) -> str:
        """Check the request; return the signer's ss58 or raise AuthError.

        `purpose` is the route's purpose or the hex SHA-256 of the raw body.
        """
        miner = headers.get(H_MINER)
        signer = headers.get(H_VALIDATOR)
        nonce = headers.get(H_NONCE)
        signature = headers.get(H_SIGNATURE)
        if not (miner and signer and nonce and signature):
            raise AuthError("missing header")
        if not _NONCE_RE.fullmatch(nonce):
            raise AuthError("malformed nonce")
        if not _SIGNATURE_RE.fullmatch(signature):
            raise AuthError("malformed signature")
        if miner != self.miner_hotkey:
            raise AuthError("wrong miner")
        if signer not in signers or not is_valid_ss58_address(signer):
            raise AuthError("signer not allowed")
        age = int(self.clock()) - int(nonce)
        if not -NONCE_WINDOW_S < age < NONCE_WINDOW_S:
            raise AuthError("nonce outside window")
        message = f"{miner}:{signer}:{nonce}:{purpose}".encode()
        raw_signature = bytes.fromhex(signature)
        if not _sr25519_verify(signer, message, raw_signature):
            raise AuthError("bad signature")
        # Keyed by the signature's bytes, so the same signature in other hex case is a replay.
        if not self.replay.add((signer, nonce, raw_signature)):
            raise AuthError("replay")
        return signer


def _sr25519_verify(ss58: str, message: bytes, signature: bytes) -> bool:
    """Check a raw or a `<Bytes>`-wrapped signature of `message`.

    bittensor-wallet's `verify` itself also accepts a signature over `<Bytes>message</Bytes>`
    (every version the package allows; `test_bytes_wrapped_signature_accepted` holds it to
    that), so one call covers both forms.
    """
    try:
        return bool(Keypair(ss58_address=ss58).verify(message, signature))
    except Exception:  # noqa: BLE001 - any library failure is a failed verification
        return False


def sign_headers(
    keypair: Keypair, miner: str, purpose: str, nonce: int | None = None
) -> dict[str, str]:
    """D1 headers signed by `keypair` (used by the device check and tests)."""
    n = str(int(time.time()) if nonce is None else nonce)
    message = f"{miner}:{keypair.ss58_address}:{n}:{purpose}"
    return {
        "X-Chutes-Miner": miner,
        "X-Chutes-Validator": keypair.ss58_address,
        "X-Chutes-Nonce": n,
        "X-Chutes-Signature": keypair.sign(message.encode()).hex(),
    }
