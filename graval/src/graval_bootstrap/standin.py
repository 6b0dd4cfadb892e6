"""A stand-in for `graval.Miner` where there is no GPU: the lab and the tests.

Selected only by `GRAVAL_STAND_IN=true` (config.py), and named as a stand-in in the start-up
log line. It does no GPU work and proves nothing: device info is made up (deterministic uuids),
and "encryption" is a keyed XOR plus a 4-byte tag, so a wrong seed, device or corrupted blob
fails to decrypt as it does with the real library. Methods, argument order and return shapes
are those of `graval.Miner` 0.2.6.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

from graval.structures import GraValError

from graval_bootstrap.gpu import MinerBackend

log = logging.getLogger(__name__)


class StandInMiner:
    """`graval.Miner`'s methods over `count` made-up devices."""

    def __init__(self, count: int = 2) -> None:
        self._device_count = count
        self._seed: int | None = None
        self._iterations = 0

    @staticmethod
    def uuid(index: int) -> str:
        return hashlib.md5(f"fake-gpu-{index}".encode()).hexdigest()  # 32 hex, like graval

    def get_device_info(self, device_id: int) -> dict[str, Any]:
        if not 0 <= device_id < self._device_count:
            raise GraValError("Failed to gather device info: bad index")
        info: dict[str, Any] = {
            "name": "NVIDIA H200",
            "uuid": self.uuid(device_id),
            "memory": 150_121_381_888,
            "processors": 132,
            "clock_rate": 1_980_000.0,
            "max_threads_per_processor": 2048,
        }
        if self._seed is not None:
            hashes = [
                hashlib.sha256(f"{self._seed}:{device_id}:{i}".encode()).hexdigest()
                for i in range(self._iterations * 2)
            ]
            info["work_product"] = {
                "intermediate_hashes": hashes,
                "num_matrices": 2,
                "total_iterations": self._iterations,
            }
        return info

    def prove(self, seed: int, iterations: int = 1) -> dict[str, Any]:
        if self._seed != seed:
            self._seed, self._iterations = seed, iterations
        out = {}
        for device_id in range(self._device_count):
            info = self.get_device_info(device_id)
            out[info["uuid"]] = {
                "device_id": device_id,
                "device_uuid": info["uuid"],
                "device_name": info["name"],
                "work_product": info["work_product"],
            }
        return out

    def decrypt(
        self, seed: int, encrypted_data: bytes, iv: bytes, length: int, device_id: int
    ) -> str:
        if self._seed != seed:
            raise GraValError("GraVal node not initialized")
        body, tag = encrypted_data[:-4], encrypted_data[-4:]
        plain = bytes(
            a ^ b
            for a, b in zip(body, _stream(seed, self.uuid(device_id), iv, len(body)), strict=True)
        )
        if len(encrypted_data) != length or hashlib.sha256(plain).digest()[:4] != tag:
            raise GraValError("Decryption failed")
        return plain.decode("utf-8")

    def process_device_info_challenge(self, challenge: str) -> str:
        uuids = ",".join(self.uuid(i) for i in range(self._device_count))
        return hashlib.sha256(f"{challenge}|{uuids}".encode()).hexdigest()


def _stream(seed: int, uuid: str, iv: bytes, n: int) -> bytes:
    out = b""
    block = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{uuid}:{block}".encode() + iv).digest()
        block += 1
    return out[:n]


def stand_in_encrypt(seed: int, uuid: str, plaintext: str, iv: bytes = b"\x07" * 16) -> str:
    """base64(iv + ct) that `StandInMiner.decrypt` accepts for that seed and device."""
    plain = plaintext.encode()
    ct = bytes(a ^ b for a, b in zip(plain, _stream(seed, uuid, iv, len(plain)), strict=True))
    return base64.b64encode(iv + ct + hashlib.sha256(plain).digest()[:4]).decode()


def open_stand_in_backend(expected: int) -> MinerBackend:
    """Start-up path with `GRAVAL_STAND_IN=true`: `expected` made-up devices, no GPU touched."""
    backend = MinerBackend(StandInMiner(expected))
    log.warning(
        "GPU STAND-IN (GRAVAL_STAND_IN=true, lab only): %d made-up devices from the stand-in"
        " Miner; no GPU is used and its proofs prove nothing",
        len(backend.uuids),
    )
    return backend
