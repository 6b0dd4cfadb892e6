"""Internal registry-auth listener: token, D2 `registry` headers, per-second cache, keep-alive."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from bittensor_wallet import Keypair
from control_api.registry_auth import _SETS_NODELAY, SignatureCache, _Protocol, serve
from control_api.services.signing import d2_message, verify
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_loops_set_nodelay_on_the_transports_we_skip(loop_kind: str) -> None:
    """connection_made skips setsockopt for these transport types: prove their loops set it."""
    seen: list[tuple[bool, bool]] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            seen.append((type(transport) in _SETS_NODELAY, bool(nodelay)))

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    else:
        asyncio.run(main())
    assert seen == [(True, True)]


class _Recorder:
    """A transport that records writes and closes (the protocol's whole contact surface)."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def _feed(miner_key: Keypair, *chunks: bytes, token: bytes = TOKEN.encode()) -> _Recorder:
    transport = _Recorder()
    proto = _Protocol(SignatureCache(miner_key), token)
    proto.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        proto.data_received(chunk)
    return transport


def _statuses(transport: _Recorder) -> list[bytes]:
    return [w.split(b"\r\n", 1)[0].split(b" ", 2)[1] for w in transport.out]


_TOK = b"X-Registry-Auth-Token: " + TOKEN.encode() + b"\r\n"
_AUTH = b"GET /registry/auth HTTP/1.1\r\nHost: r\r\n" + _TOK + b"\r\n"
_PING = b"GET /ping HTTP/1.1\r\nHost: r\r\n\r\n"
_NO_TOKEN = b"GET /registry/auth HTTP/1.1\r\nHost: r\r\n\r\n"
_CLOSE = b"GET /registry/auth HTTP/1.1\r\nConnection: close\r\n" + _TOK + b"\r\n"


def test_split_requests_answered_once_complete(miner_key: Keypair) -> None:
    t = _feed(miner_key, *(bytes([b]) for b in _AUTH))  # one byte at a time
    assert _statuses(t) == [b"200"] and not t.closed
    cut = _AUTH.index(b"\r\n\r\n") + 3  # "\r\n\r" | "\n"
    t = _feed(miner_key, _AUTH[:cut], _AUTH[cut:])
    assert _statuses(t) == [b"200"]
    assert b"X-Chutes-Signature: " in t.out[0]


def test_pipelined_in_order_with_partial_tail(miner_key: Keypair) -> None:
    stream = _AUTH + _NO_TOKEN + _PING + _AUTH
    cut = len(stream) - 7
    t = _feed(miner_key, stream[:cut], stream[cut:])
    assert _statuses(t) == [b"200", b"401", b"200", b"200"] and not t.closed
    assert t.out[2].endswith(b'{"message":"pong"}')


def test_close_mid_pipeline_stops_answering(miner_key: Keypair) -> None:
    t = _feed(miner_key, _AUTH + _CLOSE + _AUTH, _AUTH)
    assert _statuses(t) == [b"200", b"200"] and t.closed
    assert b"Connection: close" in t.out[1] and b"Connection: keep-alive" in t.out[0]


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET /registry/auth HTTP/1.0\r\n", False),  # nginx's default upstream dialect
        (b"GET /registry/auth HTTP/1.0\r\nConnection: close\r\n", False),
        (b"GET /registry/auth HTTP/1.0\r\nConnection: Keep-Alive\r\n", True),
        (b"GET /registry/auth HTTP/1.1\r\nConnection: keep-alive, TE\r\n", True),
        (b"GET /registry/auth HTTP/1.1\r\nconnection: TE, close\r\n", False),
        (b"GET /registry/auth?scope=x HTTP/1.1\r\n", True),
    ],
)
def test_connection_semantics(miner_key: Keypair, head: bytes, keep_alive: bool) -> None:
    t = _feed(miner_key, head + _TOK + b"\r\n")
    assert _statuses(t) == [b"200"] and t.closed is not keep_alive


def test_token_header_name_case_and_whitespace(miner_key: Keypair) -> None:
    req = (
        b"GET /registry/auth HTTP/1.1\r\nx-REGISTRY-auth-token:   " + TOKEN.encode() + b"  \r\n\r\n"
    )
    assert _statuses(_feed(miner_key, req)) == [b"200"]
    prefix = b"GET /registry/auth HTTP/1.1\r\nX-Registry-Auth-Token: " + TOKEN.encode()
    assert _statuses(_feed(miner_key, prefix + b"x\r\n\r\n")) == [b"401"]
    assert _statuses(_feed(miner_key, _AUTH, token=b"")) == [b"401"]  # no secret: never 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"\r\n\r\n", b"400"),
        (b"GET /registry/auth\r\n\r\n", b"400"),
        (b"GET  /registry/auth HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /registry/auth HTTP/2.0\r\n\r\n", b"400"),
        (b"GET /registry/auth HTTP/1.1\r\nTransfer-Encoding: chunked\r\n" + _TOK + b"\r\n", b"400"),
        (b"GET /registry/auth HTTP/1.1\r\nContent-Length: 5\r\n" + _TOK + b"\r\nhello", b"400"),
        (b"GET /registry/auth HTTP/1.1\r\nX-Pad: " + b"a" * 17000 + b"\r\n\r\n", b"431"),
        (b"GET /registry/auth HTTP/1.1\r\nX-Pad: " + b"a" * 17000, b"431"),  # never ends
    ],
)
def test_malformed_closes_without_answering_later_bytes(
    miner_key: Keypair, request_bytes: bytes, status: bytes
) -> None:
    t = _feed(miner_key, request_bytes, _AUTH)
    assert _statuses(t) == [status] and t.closed


def test_zero_length_body_and_other_routes(miner_key: Keypair) -> None:
    req = b"GET /registry/auth HTTP/1.1\r\nContent-Length: 0\r\n" + _TOK + b"\r\n"
    t = _feed(miner_key, req, b"POST /registry/auth HTTP/1.1\r\n" + _TOK + b"\r\n")
    assert _statuses(t) == [b"200", b"404"] and not t.closed


_REQUESTS = [_AUTH, _NO_TOKEN, _PING, b"GET /nope HTTP/1.1\r\n\r\n"]


@given(
    picks=st.lists(st.integers(0, len(_REQUESTS) - 1), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
@settings(max_examples=200, deadline=None)
def test_any_split_of_a_pipeline_gives_the_same_answers(
    miner_key: Keypair, picks: list[int], cuts: list[int]
) -> None:
    stream = b"".join(_REQUESTS[i] for i in picks)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    whole, split = _feed(miner_key, stream), _feed(miner_key, *chunks)
    assert (
        _statuses(split)
        == _statuses(whole)
        == [{0: b"200", 1: b"401", 2: b"200", 3: b"404"}[i] for i in picks]
    )
