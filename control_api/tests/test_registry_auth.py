"""Internal registry-auth listener: token, D2 `registry` headers, per-second cache, keep-alive."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from bittensor_wallet import Keypair
from control_api.core.signing import d2_message, verify
from control_api.registry_auth import (
    _SETS_NODELAY,
    _UNAUTHORIZED,
    Limits,
    SignatureCache,
    _Connections,
    _Protocol,
    serve,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TOKEN
from tests.standins import free_port


@contextmanager
def _serving(miner_key: Keypair, limits: Limits | None = None) -> Iterator[str]:
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(miner_key, TOKEN, "127.0.0.1", port, limits=limits))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture()
def listener(miner_key: Keypair) -> Iterator[str]:
    with _serving(miner_key) as url:
        yield url


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
        assert http.get("/metrics").status_code == 404  # on METRICS_PORT, from a thread


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
            proto = _Protocol(SignatureCache(miner_key), b"t", _Connections(Limits()))
            proto.connection_made(SockTransport(conn))
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
    proto = _Protocol(SignatureCache(miner_key), token, _Connections(Limits()))
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
_BAD_Q = [b"%00", b"a%0ab", b"%1b", b"%7f", b"%c2%85", b"%ff", b"%c0%80", b"\x00", b"\x01", b"\xff"]
_BAD_H = [
    b"X-A: \x00\r\n",
    b"X-A: a\x1bb\r\n",
    b"X-A: \x7f\r\n",
    b"X-A: \xc3\xa9\r\n",
    b"X\x01A: b\r\n",
]


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
        # control characters and bytes that are not ASCII, raw or percent-encoded (issue #16)
        *(
            (b"GET /registry/auth?x=" + q + b" HTTP/1.1\r\n" + _TOK + b"\r\n", b"400")
            for q in _BAD_Q
        ),
        *((b"GET /registry/auth HTTP/1.1\r\n" + _TOK + h + b"\r\n", b"400") for h in _BAD_H),
        (b"GET /registry/auth HTTP/1.1\r\n" + _TOK[:-2] + b"\x0b\r\n\r\n", b"400"),
        (b"GET /ping%00 HTTP/1.1\r\n\r\n", b"400"),
        # two lengths: a parser that reads the second one sees a body
        (
            b"GET /registry/auth HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n"
            + _TOK
            + b"\r\nhello",
            b"400",
        ),
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


def test_duplicate_token_header_is_401(miner_key: Keypair) -> None:
    """Two X-Registry-Auth-Token headers are ambiguous (nginx and this listener might read
    different ones): 401 even when both carry the secret."""
    head = b"GET /registry/auth HTTP/1.1\r\nHost: r\r\n"
    for second in (b"x", TOKEN.encode()):
        req = head + _TOK + b"X-Registry-Auth-Token: " + second + b"\r\n\r\n"
        assert _statuses(_feed(miner_key, req)) == [b"401"]


class _SlowReader(_Recorder):
    """A transport whose peer reads only when told: above `high` unsent bytes it calls the
    protocol's pause_writing, as asyncio and uvloop transports do."""

    def __init__(self, high: int) -> None:
        super().__init__()
        self.high = high
        self.unsent = 0
        self.most_unsent = 0
        self.reading = True
        self.proto: _Protocol | None = None

    def write(self, data: bytes) -> None:
        super().write(data)
        self.unsent += len(data)
        self.most_unsent = max(self.most_unsent, self.unsent)
        if self.unsent > self.high and self.proto is not None:
            self.proto.pause_writing()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def peer_reads(self) -> None:
        self.unsent = 0
        assert self.proto is not None
        self.proto.resume_writing()


def test_pipelining_stops_while_the_peer_does_not_read(miner_key: Keypair) -> None:
    """Issue #16 item 4: 2,000 pipelined requests in one segment from a peer that reads
    nothing get answers only up to the high-water mark; reading stops until the peer reads;
    then the rest is answered, in order, none lost."""
    high = 4096
    t = _SlowReader(high)
    proto = _Protocol(SignatureCache(miner_key), TOKEN.encode(), _Connections(Limits()))
    t.proto = proto
    proto.connection_made(t)  # type: ignore[arg-type]
    proto.data_received((_PING + _AUTH) * 1000)
    answered = len(t.out)
    assert 0 < answered < 50 and not t.reading
    while len(t.out) < 2000:
        before = len(t.out)
        t.peer_reads()
        assert len(t.out) > before, "resume_writing answered nothing"
    assert _statuses(t) == [b"200"] * 2000 and t.reading and not t.closed
    assert all(out.endswith(b'{"message":"pong"}') for out in t.out[::2])
    assert t.most_unsent <= high + max(len(o) for o in t.out)


def test_flooding_connection_does_not_stall_pulls(listener: str) -> None:
    """A connection that pipelines 400,000 requests (16 MB, more than the kernel buffers hold)
    and reads nothing is paused (its sender blocks); an authenticated request on another
    connection is answered meanwhile; the flood's answers all arrive once its peer reads."""
    port = int(listener.rsplit(":", 1)[1])
    n = 400_000
    with socket.create_connection(("127.0.0.1", port)) as flood:
        sender = threading.Thread(target=flood.sendall, args=(_NO_TOKEN * n,), daemon=True)
        sender.start()
        time.sleep(0.5)
        assert sender.is_alive()  # the listener stopped reading: backpressure reached the peer
        resp = httpx.get(listener + "/registry/auth", headers={"X-Registry-Auth-Token": TOKEN})
        assert resp.status_code == 200
        flood.settimeout(10)
        expected = n * len(_UNAUTHORIZED[True])  # every answer is the same keep-alive 401
        size = 0
        while size < expected:
            chunk = flood.recv(1 << 20)
            assert chunk, f"closed after {size} of {expected} bytes"
            size += len(chunk)
        sender.join(5)
        assert size == expected and not sender.is_alive()


@pytest.fixture()
def tight(miner_key: Keypair) -> Iterator[int]:
    limits = Limits(header_timeout_s=0.4, idle_timeout_s=0.8, max_connections=20)
    with _serving(miner_key, limits) as url:
        yield int(url.rsplit(":", 1)[1])


def _closed_within(s: socket.socket, seconds: float) -> tuple[bytes, float]:
    start = time.monotonic()
    s.settimeout(seconds)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except TimeoutError:
        return got, float("inf")
    return got, time.monotonic() - start


def test_listener_closes_silent_slow_and_idle_connections(tight: int) -> None:
    with socket.create_connection(("127.0.0.1", tight)) as s:  # sends nothing at all
        got, took = _closed_within(s, 5)
        assert got == b"" and took < 2
    with socket.create_connection(("127.0.0.1", tight)) as s:  # a head that trickles
        s.sendall(b"GET /registry/auth HTTP/1.1\r\n")
        start = time.monotonic()
        for _ in range(20):
            try:
                s.sendall(b"X: y\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
        got, _ = _closed_within(s, 5)
        assert got.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 3
    with socket.create_connection(("127.0.0.1", tight)) as s:  # keep-alive, then idle
        s.sendall(_AUTH)
        s.settimeout(2)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        got, took = _closed_within(s, 5)
        assert got == b"" and 0.5 < took < 3


def test_listener_full_of_idle_connections_still_admits(miner_key: Keypair) -> None:
    """Above max_connections the idlest connections are closed: 60 idle connections (limit
    20) do not lock out a pull, and the newest ones survive."""
    limits = Limits(header_timeout_s=30, idle_timeout_s=30, max_connections=20)
    with _serving(miner_key, limits) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        try:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(_AUTH)
                s.settimeout(2)
                assert s.recv(4096).startswith(b"HTTP/1.1 200")
            closed = 0
            for sock in idle[:20]:
                sock.settimeout(2)
                try:
                    closed += sock.recv(1) == b""
                except (TimeoutError, ConnectionResetError):
                    pass
            assert closed == 20  # the oldest were closed first
            survivor = idle[-1]
            survivor.sendall(_AUTH)
            survivor.settimeout(2)
            assert survivor.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            for sock in idle:
                sock.close()


def test_long_pipeline_yields_the_loop_between_batches(miner_key: Keypair) -> None:
    """1,000 pipelined requests in one segment are answered 128 per turn of the event loop
    (reading paused in between), so one connection's pipeline cannot hold the loop."""

    async def main() -> tuple[int, _SlowReader]:
        t = _SlowReader(high=1 << 30)  # a peer that reads everything
        proto = _Protocol(SignatureCache(miner_key), TOKEN.encode(), _Connections(Limits()))
        t.proto = proto
        proto.connection_made(t)  # type: ignore[arg-type]
        proto.data_received(_PING * 1000)
        first = len(t.out)
        assert not t.reading
        for _ in range(20):
            await asyncio.sleep(0)
        return first, t

    first, t = asyncio.run(main())
    assert first == 128
    assert _statuses(t) == [b"200"] * 1000 and t.reading
