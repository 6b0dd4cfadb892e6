"""GPU access behind a small Protocol; the real backend wraps `graval.Miner`.

Nothing here loads native code at import time: pycuda and `graval.Miner()` are touched only
by `open_graval_backend()`, called once at start-up on a GPU node.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEVICE_INFO_KEYS = (
    "name",
    "uuid",
    "memory",
    "processors",
    "clock_rate",
    "max_threads_per_processor",
)


class BackendError(Exception):
    """A GPU operation failed; the message holds no request payload."""


class DecryptError(BackendError):
    """A ciphertext did not decrypt (maps to 400)."""


class MinerLike(Protocol):
    """The part of `graval.Miner` (0.2.6) the bootstrap uses."""

    _device_count: int

    def get_device_info(self, device_id: int) -> dict[str, Any]: ...

    def prove(self, seed: int, iterations: int = 1) -> Any: ...

    def decrypt(
        self, seed: int, encrypted_data: bytes, iv: bytes, length: int, device_id: int
    ) -> str: ...

    def process_device_info_challenge(self, challenge: str) -> str: ...


class DeviceBackend(Protocol):
    """What the HTTP layer needs from the GPUs. Calls block; the app runs them in a thread."""

    @property
    def uuids(self) -> tuple[str, ...]:
        """Device uuids by index, read once at start-up."""
        ...

    def device_info(self, index: int) -> dict[str, Any]:
        """§2.3 device_info of device `index`, without `work_product`."""
        ...

    def prove(self, seed: int, iterations: int) -> dict[str, Any]:
        """Proof of work per uuid: {device_id, device_uuid, device_name, work_product}."""
        ...

    def decrypt(self, seed: int, index: int, iv: bytes, ciphertext: bytes) -> str:
        """Decrypt one ciphertext on device `index`; raise DecryptError on failure."""
        ...

    def info(self, challenge: str) -> str:
        """Answer a device-info challenge (64 characters)."""
        ...


class MinerBackend:
    """DeviceBackend over a `graval.Miner` (or a stand-in with the same methods)."""

    def __init__(self, miner: MinerLike) -> None:
        self._miner = miner
        count = int(miner._device_count)
        try:
            self._uuids = tuple(str(miner.get_device_info(i)["uuid"]) for i in range(count))
        except Exception as exc:
            raise BackendError(f"device info failed at start: {type(exc).__name__}") from exc

    @property
    def uuids(self) -> tuple[str, ...]:
        return self._uuids

    def device_info(self, index: int) -> dict[str, Any]:
        with _gpu_errors("get_device_info"):
            info = self._miner.get_device_info(index)
        return {k: v for k, v in info.items() if k != "work_product"}

    def prove(self, seed: int, iterations: int) -> dict[str, Any]:
        with _gpu_errors("prove"):
            proof = self._miner.prove(seed, iterations=iterations)
        if not isinstance(proof, dict):
            raise BackendError("prove returned no mapping")
        return proof

    def decrypt(self, seed: int, index: int, iv: bytes, ciphertext: bytes) -> str:
        try:
            return self._miner.decrypt(seed, ciphertext, iv, len(ciphertext), index)
        except Exception as exc:
            # GraValError("Decryption failed") or a UTF-8 error on garbage output.
            raise DecryptError(type(exc).__name__) from exc

    def info(self, challenge: str) -> str:
        with _gpu_errors("process_device_info_challenge"):
            return self._miner.process_device_info_challenge(challenge)


@contextmanager
def _gpu_errors(call: str) -> Iterator[None]:
    """Any library failure becomes a BackendError naming the call and exception type only."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"{call} failed: {type(exc).__name__}") from exc


def cuda_preflight(expected: int) -> int:
    """Check the CUDA driver answers and sees exactly `expected` devices; return the count."""
    try:
        import pycuda.driver as cuda  # noqa: PLC0415 - native, only on the GPU node
    except ImportError as exc:
        raise BackendError("pycuda is not installed") from exc
    try:
        cuda.init()
        count = int(cuda.Device.count())
    except Exception as exc:
        raise BackendError(f"CUDA driver unavailable: {type(exc).__name__}: {exc}") from exc
    if count != expected:
        raise BackendError(f"CUDA sees {count} devices, EXPECTED_GPU_COUNT is {expected}")
    return count


def open_graval_backend(expected: int) -> MinerBackend:
    """Start-up path on a GPU node: preflight, `graval.Miner()`, device info per device."""
    cuda_preflight(expected)
    try:
        from graval import Miner  # noqa: PLC0415 - import is cheap; Miner() loads native code

        miner: MinerLike = Miner()
    except Exception as exc:
        raise BackendError(f"graval.Miner() failed: {type(exc).__name__}: {exc}") from exc
    if int(miner._device_count) != expected:
        raise BackendError(
            f"graval sees {miner._device_count} devices, EXPECTED_GPU_COUNT is {expected}"
        )
    backend = MinerBackend(miner)
    log.info("graval ready: %d devices", len(backend.uuids))
    return backend
