"""Internal registry-auth listener: token, D2 `registry` headers, per-second cache, keep-alive."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from bittensor_wallet import Keypair
from control_api.registry_auth import SignatureCache, _Protocol, serve
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


def _exchange(port: int, request: bytes) -> tuple[bytes, bool]:
    """Send one raw request; return the answer and whether the server closed afterwards."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        s.settimeout(2)
        data = s.recv(4096)
        s.settimeout(0.3)
        try:
            closed = s.recv(1) == b""
        except TimeoutError:
            closed = False
    return data, closed


def test_connection_handling(listener: str) -> None:
    port = int(listener.rsplit(":", 1)[1])
    tok = b"X-Registry-Auth-Token: " + TOKEN.encode() + b"\r\n"
    get = b"GET /registry/auth HTTP/1.1\r\nHost: r\r\n"
    data, closed = _exchange(port, get + tok + b"\r\n")
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: keep-alive" in data and not closed
    data, closed = _exchange(port, get + b"connection: Close\r\n" + tok + b"\r\n")
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data and closed
    data, closed = _exchange(port, b"GET /registry/auth HTTP/1.0\r\n" + tok + b"\r\n")
    assert data.startswith(b"HTTP/1.1 200") and closed
    data, _ = _exchange(port, get + tok.upper() + b"\r\n")  # the secret is case-sensitive
    assert data.startswith(b"HTTP/1.1 401")
    data, closed = _exchange(port, get + tok + b"Content-Length: 3\r\n\r\nabc")
    assert data.startswith(b"HTTP/1.1 400") and closed
    # two requests in one segment (pipelining) get two answers
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall((get + tok + b"\r\n") * 2)
        s.settimeout(2)
        got = b""
        while got.count(b"HTTP/1.1 200") < 2:
            got += s.recv(4096)


def test_accepted_sockets_get_nodelay(miner_key: Keypair) -> None:
    class SockTransport(asyncio.Transport):
        def __init__(self, sock: socket.socket) -> None:
            super().__init__()
            self.sock = sock

        def get_extra_info(self, name: str, default: object = None) -> object:
            return self.sock if name == "socket" else default

    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        with client, conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            _Protocol(SignatureCache(miner_key), b"t").connection_made(SockTransport(conn))
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
