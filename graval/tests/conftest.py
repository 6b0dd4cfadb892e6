"""Fixtures for the bootstrap tests: real sr25519 keys, a stand-in for `graval.Miner`."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bittensor_wallet import Keypair
from fastapi import FastAPI
from fastapi.testclient import TestClient
from graval.structures import GraValError
from graval_bootstrap.app import HttpClientFactory, create_app, default_http_client
from graval_bootstrap.auth import sign_headers
from graval_bootstrap.config import Settings
from graval_bootstrap.gpu import MinerBackend


class FakeMiner:
    """Stand-in for `graval.Miner` 0.2.6: same methods, argument order and return shapes.

    It does no GPU work. "Encryption" is a keyed XOR plus a 4-byte tag, so a wrong seed,
    device or corrupted blob fails to decrypt like the real library does.
    """

    def __init__(self, count: int = 2, prove_delay: float = 0.0) -> None:
        self._device_count = count
        self._seed: int | None = None
        self._iterations = 0
        self.prove_delay = prove_delay
        self.active = 0
        self.max_active = 0
        self.prove_calls = 0
        self._guard = threading.Lock()

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
        with self._guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.prove_calls += 1
        try:
            time.sleep(self.prove_delay)
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
        finally:
            with self._guard:
                self.active -= 1

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


def fake_encrypt(seed: int, uuid: str, plaintext: str, iv: bytes = b"\x07" * 16) -> str:
    """base64(iv + ct) that FakeMiner.decrypt accepts for that seed and device."""
    plain = plaintext.encode()
    ct = bytes(a ^ b for a, b in zip(plain, _stream(seed, uuid, iv, len(plain)), strict=True))
    return base64.b64encode(iv + ct + hashlib.sha256(plain).digest()[:4]).decode()


class Keys:
    """Real sr25519 keypairs: our miner hotkey, a whitelisted validator, an outsider."""

    def __init__(self) -> None:
        self.miner = Keypair.create_from_uri("//GravalTestMiner")
        self.validator = Keypair.create_from_uri("//GravalTestValidator")
        self.other = Keypair.create_from_uri("//GravalTestOutsider")

    def d1(self, signer: Keypair, purpose: str, nonce: int | None = None) -> dict[str, str]:
        return sign_headers(signer, self.miner.ss58_address, purpose, nonce)

    def body(self, signer: Keypair, body: bytes, nonce: int | None = None) -> dict[str, str]:
        headers = self.d1(signer, hashlib.sha256(body).hexdigest(), nonce)
        headers["Content-Type"] = "application/json"
        return headers


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def settings(keys: Keys) -> Settings:
    return Settings(
        miner_hotkey=keys.miner.ss58_address,
        validator_whitelist=(keys.validator.ss58_address,),
        expected_gpu_count=2,
        remote_token_allowed_hosts=("api.chutes.test",),
    )


@pytest.fixture
def miner() -> FakeMiner:
    return FakeMiner()


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(settings: Settings, miner: FakeMiner) -> AppFactory:
    def build(
        *,
        settings_: Settings = settings,
        miner_: FakeMiner = miner,
        clock: Callable[[], float] = time.time,
        http_client: HttpClientFactory = default_http_client,
    ) -> FastAPI:
        return create_app(settings_, MinerBackend(miner_), clock=clock, http_client=http_client)

    return build


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    with TestClient(make_app(), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


Encrypt = Callable[..., str]


@pytest.fixture
def encrypt() -> Encrypt:
    """`fake_encrypt(seed, uuid, plaintext[, iv])` for tests that cannot import conftest."""
    return fake_encrypt
