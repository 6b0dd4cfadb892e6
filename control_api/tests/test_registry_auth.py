"""Internal registry-auth listener: token, D2 `registry` headers, per-second cache, keep-alive."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from bittensor_wallet import Keypair
from control_api.registry_auth import SignatureCache, serve
from control_api.services.signing import d2_message, verify

from tests.conftest import TOKEN
from tests.standins import free_port


@pytest.fixture()
def listener(miner_key: Keypair) -> Iterator[str]:
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(miner_key, TOKEN, "127.0.0.1", port))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_signed_headers(listener: str, miner_key: Keypair) -> None:
    host = f"{miner_key.ss58_address.lower()}.localregistry.chutes.ai:30500"
    with httpx.Client(base_url=listener) as http:
        resp = http.get("/registry/auth", headers={"X-Registry-Auth-Token": TOKEN, "Host": host})
        assert resp.status_code == 200 and resp.json() == {"authenticated": True}
        h = resp.headers
        assert h["X-Chutes-Hotkey"] == miner_key.ss58_address
        msg = d2_message(h["X-Chutes-Hotkey"], h["X-Chutes-Nonce"], "registry")
        assert verify(miner_key.ss58_address, msg, bytes.fromhex(h["X-Chutes-Signature"]))
        # keep-alive: several requests on one connection
        for _ in range(3):
            assert http.get("/registry/auth", headers={"X-Registry-Auth-Token": TOKEN}).is_success
        assert http.get("/registry/auth").status_code == 401
        assert http.get("/registry/auth", headers={"X-Registry-Auth-Token": "x"}).status_code == 401
        assert http.get("/elsewhere").status_code == 404
        assert "registry_auth_responses_total" in http.get("/metrics").text


def test_garbage_does_not_kill_listener(listener: str) -> None:
    port = int(listener.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"\x00\xff garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert httpx.get(listener + "/ping").status_code == 200


def test_signature_cached_per_second(miner_key: Keypair) -> None:
    now = [1000.2]
    calls = []

    class Counting:
        ss58_address = miner_key.ss58_address

        def sign(self, data: bytes) -> bytes:
            calls.append(data)
            return bytes(miner_key.sign(data))

    cache = SignatureCache(Counting(), clock=lambda: now[0])
    first = cache.headers()
    now[0] = 1000.9
    assert cache.headers() == first and len(calls) == 1
    now[0] = 1001.0
    assert cache.headers() != first and len(calls) == 2
