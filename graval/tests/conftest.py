"""Fixtures for the bootstrap tests: real sr25519 keys, a stand-in for `graval.Miner`."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bittensor_wallet import Keypair
from fastapi import FastAPI
from fastapi.testclient import TestClient
from graval_bootstrap.app import HttpClientFactory, create_app, default_http_client
from graval_bootstrap.auth import sign_headers
from graval_bootstrap.config import Settings
from graval_bootstrap.gpu import MinerBackend
from graval_bootstrap.standin import StandInMiner, stand_in_encrypt


class FakeMiner(StandInMiner):
    """The stand-in `graval.Miner` (graval_bootstrap.standin), counting concurrent proofs and
    optionally slow, for the concurrency tests."""

    def __init__(self, count: int = 2, prove_delay: float = 0.0) -> None:
        super().__init__(count)
        self.prove_delay = prove_delay
        self.active = 0
        self.max_active = 0
        self.prove_calls = 0
        self._guard = threading.Lock()

    def prove(self, seed: int, iterations: int = 1) -> dict[str, Any]:
        with self._guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.prove_calls += 1
        try:
            time.sleep(self.prove_delay)
            return super().prove(seed, iterations)
        finally:
            with self._guard:
                self.active -= 1


fake_encrypt = stand_in_encrypt  # the name tests/integration/test_graval_client.py reads


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
    """`stand_in_encrypt(seed, uuid, plaintext[, iv])` for tests that cannot import conftest."""
    return stand_in_encrypt
