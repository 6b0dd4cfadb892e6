"""Internal registry-auth listener (contract §3): a minimal asyncio HTTP/1.1 server.

nginx's `auth_request` subrequest gets `200 {"authenticated": true}` plus D2 headers over
`{ss58}:{nonce}:registry`. The whole `200` answer is rendered once per second (a burst of layer
pulls costs one signing), the `X-Registry-Auth-Token` secret is compared in constant time, and
nothing else is served except `/ping` (Prometheus metrics are on METRICS_PORT, served from a
thread by the entry point). FastAPI tops out near 7k req/s on 2 cores; this parser does what
nginx needs and no more.

Hot path (one `GET /registry/auth` in one segment): one search for the end of the head, one
slice, one `translate` (lower case, and every byte nginx never sends marked), four substring
searches, one `hmac.compare_digest`, one write of pre-built bytes. No logging, no dicts, no
locks: the response counters are plain integers a custom Prometheus collector reads at scrape
time. Pipelined and split requests are handled; bodies, control characters and bytes that are
not ASCII anywhere in the head, and targets that decode to either, are refused (400).

Nobody who can reach the port can stall it (issue #16): a connection whose peer does not read
stops being read once its unsent output passes the transport's high-water mark (64 KiB), and
resumes when the peer catches up; a request head must be complete within `max_head_bytes` and
`header_timeout_s`; an idle connection closes after `idle_timeout_s`; above `max_connections`
the connections idle the longest are closed to admit new ones. A sweep once per `tick` does the
timing (a connection stores the coarse clock, it arms no timer).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from control_api.core.signing import Signer, d2_message
from control_api.core.text import clean_target

log = logging.getLogger(__name__)
_BACKLOG = 4096  # capped by net.core.somaxconn
_BATCH = 128  # pipelined requests answered per turn of the event loop (~0.3 ms)
_BODY = b'{"authenticated":true}'
_END = b"\r\n\r\n"
_AUTH_LINE = b"GET /registry/auth HTTP/1.1\r\n"  # what nginx sends (proxy_http_version 1.1)
_TOKEN = b"\r\nx-registry-auth-token:"
_CONNECTION = b"\r\nconnection:"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_TRANSFER_ENCODING = b"\r\ntransfer-encoding:"
_AUTH, _PING, _OTHER = 0, 1, 2


def _lower_and_mark() -> bytes:
    """A `bytes.translate` table: ASCII letters to lower case, and every byte nginx never sends
    in a head (controls but TAB, CR and LF; DEL) to 0x80, so that `isascii()` (a word at a time)
    is false for a head holding one of them or a byte that is not ASCII. The pair costs ~75 ns
    more than `lower()` on nginx's head (~110 bytes); `b"\0" in` would cost ~200 ns more."""
    table = bytearray(range(256))
    table[ord("A") : ord("Z") + 1] = bytes(range(ord("a"), ord("z") + 1))
    for byte in (*range(0x20), 0x7F):
        if byte not in (0x09, 0x0A, 0x0D):
            table[byte] = 0x80
    return bytes(table)


_LOWER = _lower_and_mark()


def _nodelay_transports() -> frozenset[type]:
    """TCP transport classes whose loop sets TCP_NODELAY on every accepted socket."""
    from asyncio import selector_events

    known: set[type] = {selector_events._SelectorSocketTransport}  # type: ignore[attr-defined]
    try:
        import uvloop.loop

        known.add(uvloop.loop.TCPTransport)  # type: ignore[attr-defined]
    except ImportError:
        pass
    return frozenset(known)


_SETS_NODELAY = _nodelay_transports()
_ROUTES = {b"/registry/auth": _AUTH, b"/ping": _PING}


@dataclass(frozen=True)
class Limits:
    max_head_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 75.0  # nginx keeps idle upstream connections 60 s
    max_connections: int = 10_000

    @property
    def tick_s(self) -> float:
        return min(1.0, self.header_timeout_s / 4, self.idle_timeout_s / 4)


class _Counts:
    """Answers by status; plain ints (one event loop thread writes, the scrape reads)."""

    ok = 0
    unauthorized = 0


class _CountsCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "registry_auth_responses", "Registry auth answers", labels=["status"]
        )
        family.add_metric(["200"], _Counts.ok)
        family.add_metric(["401"], _Counts.unauthorized)
        yield family


REGISTRY.register(_CountsCollector())


class SignatureCache:
    """The whole 200 answer for the current second, signed at most once per second."""

    def __init__(self, signer: Signer, clock: Callable[[], float] = time.time) -> None:
        self._signer = signer
        self._clock = clock
        self._nonce = -1
        self._headers = b""
        self._ok: tuple[bytes, bytes] = (b"", b"")  # (close, keep-alive)

    def _refresh(self, nonce: int) -> None:
        me = self._signer.ss58_address
        sig = self._signer.sign(d2_message(me, str(nonce), "registry")).hex()
        self._headers = (
            f"X-Chutes-Hotkey: {me}\r\nX-Chutes-Nonce: {nonce}\r\nX-Chutes-Signature: {sig}\r\n"
        ).encode()
        self._ok = (
            _response("200 OK", _BODY, self._headers, keep_alive=False),
            _response("200 OK", _BODY, self._headers, keep_alive=True),
        )
        self._nonce = nonce

    def headers(self) -> bytes:
        nonce = int(self._clock())
        if nonce != self._nonce:
            self._refresh(nonce)
        return self._headers

    def ok(self, keep_alive: bool) -> bytes:
        """Pre-rendered `200` response bytes (status line, D2 headers, body)."""
        nonce = int(self._clock())
        if nonce != self._nonce:
            self._refresh(nonce)
        return self._ok[keep_alive]


def _response(status: str, body: bytes, extra: bytes = b"", keep_alive: bool = True) -> bytes:
    conn = b"keep-alive" if keep_alive else b"close"
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: "
        + conn
        + b"\r\n"
        + extra
        + b"\r\n"
        + body
    )


def _fixed(status: str, body: bytes) -> tuple[bytes, bytes]:
    return _response(status, body, keep_alive=False), _response(status, body, keep_alive=True)


_UNAUTHORIZED = _fixed("401 Unauthorized", b'{"detail":"unauthorized"}')
_PONG = _fixed("200 OK", b'{"message":"pong"}')
_NOT_FOUND = _fixed("404 Not Found", b'{"detail":"not found"}')
_BAD_REQUEST = _response("400 Bad Request", b"{}", keep_alive=False)
_TOO_LARGE = _response("431 Request Header Fields Too Large", b"{}", keep_alive=False)
_TOO_SLOW = _response("408 Request Timeout", b"{}", keep_alive=False)


def _value(head: bytes, at: int, name_len: int) -> bytes:
    """The stripped value of the header whose `\\r\\nname:` starts at `at`."""
    start = at + name_len
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


def _parse_line(head: bytes) -> tuple[int, bool] | None:
    """(route, HTTP/1.1?) from the request line, or None when it is not HTTP/1.x or its target
    is not clean text once decoded."""
    line_end = head.find(b"\r\n")
    parts = (head if line_end < 0 else head[:line_end]).split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    method, target, version = parts
    path, _, query = target.partition(b"?")
    if b"%" in target and not clean_target(path, query):
        return None  # an encoded control character or bytes that are not UTF-8
    route = _ROUTES.get(path, _OTHER) if method == b"GET" else _OTHER
    return route, version == b"HTTP/1.1"


class _Connections:
    """Every open connection of one server, the coarse clock they store, and the sweep that
    closes the slow and the idle ones."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open: set[_Protocol] = set()
        self.now = 0.0
        self.admitted = 0
        self.server: asyncio.Server | None = None

    def start(self, server: asyncio.Server) -> None:
        self.server = server
        self.now = asyncio.get_running_loop().time()
        asyncio.get_running_loop().call_later(self.limits.tick_s, self._sweep)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self.now = now = loop.time()
        head_s, idle_s = self.limits.header_timeout_s, self.limits.idle_timeout_s
        for conn in list(self.open):
            if conn.waiting_since >= 0:
                if now - conn.waiting_since > head_s:
                    conn.close(_TOO_SLOW if conn.has_partial_head() else b"")
            elif now - conn.last > idle_s:
                conn.close(b"")
        if self.server is not None and (self.server.is_serving() or self.open):
            loop.call_later(self.limits.tick_s, self._sweep)

    def admit(self, conn: _Protocol) -> None:
        self.admitted += 1
        conn.born = self.admitted  # orders connections within one tick of the coarse clock
        self.open.add(conn)
        if len(self.open) > self.limits.max_connections:
            # close the idlest tenth (those waiting for a head count from when they began)
            ranked = sorted(
                (c for c in self.open if c is not conn),
                key=lambda c: (c.waiting_since if c.waiting_since >= 0 else c.last, c.born),
            )
            for victim in ranked[: max(1, len(ranked) // 10)]:
                victim.close(b"")


class _Protocol(asyncio.Protocol):
    """One connection: answers each complete request head in order, then waits for more."""

    __slots__ = (
        "_buf",
        "_cache",
        "_conns",
        "_max_head",
        "_paused",
        "_token",
        "_transport",
        "born",
        "last",
        "waiting_since",
    )

    def __init__(self, cache: SignatureCache, token: bytes, conns: _Connections) -> None:
        self._cache = cache
        self._token = token
        self._conns = conns
        self._max_head = conns.limits.max_head_bytes
        self._buf = b""
        self._paused = False
        self._transport: asyncio.Transport | None = None
        self.born = 0
        self.last = conns.now
        self.waiting_since = conns.now  # a fresh connection owes a head within the timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._conns.admit(self)
        if type(transport) in _SETS_NODELAY:
            return
        # Issue 6: without TCP_NODELAY keep-alive answers wait ~40 ms for delayed ACKs. uvloop
        # and asyncio set it on every TCP transport (tested); any other transport gets it here.
        # Not done unconditionally: get_extra_info("socket") + setsockopt cost ~25 us per
        # connection under uvloop, a quarter of a new-connection request's server time.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None  # break the protocol <-> transport cycle without the GC
        self._buf = b""
        self._conns.open.discard(self)

    def has_partial_head(self) -> bool:
        return bool(self._buf)

    def close(self, answer: bytes) -> None:
        self._conns.open.discard(self)  # counted out now, not at connection_lost
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if answer:
                transport.write(answer)
            transport.close()

    def pause_writing(self) -> None:
        """The peer is not reading: stop answering (and reading) until it catches up."""
        self._paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
            if self._buf:
                self.data_received(b"")  # the requests that arrived while paused

    def _next_batch(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._paused:
            return  # closed, or resume_writing will carry on
        transport.resume_reading()
        self.data_received(b"")

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # answered with close already: ignore what follows
        if self._buf:
            data = self._buf + data
            self._buf = b""
        now = self._conns.now
        self.last = now
        start = 0
        answered = 0
        end = data.find(_END)
        while end >= 0:
            if end - start > self._max_head:
                self.close(_TOO_LARGE)
                return
            if not self._answer(transport, data[start:end]):
                return
            start = end + 4
            answered += 1
            if self._paused:  # unsent output above the high-water mark: keep the rest
                self._buf = data[start:]
                self.waiting_since = now if self._buf else -1.0
                return
            end = data.find(_END, start)
            if end >= 0 and answered == _BATCH:
                # a long pipeline: let the other connections have the loop between batches
                self._buf = data[start:]
                self.waiting_since = now
                transport.pause_reading()
                asyncio.get_running_loop().call_soon(self._next_batch)
                return
        if start < len(data):
            rest = data[start:] if start else data
            if len(rest) > self._max_head:
                self.close(_TOO_LARGE)
                return
            self._buf = rest
            if start or self.waiting_since < 0:
                self.waiting_since = now  # a new head began in this segment
        else:
            self.waiting_since = -1.0

    def _answer(self, transport: asyncio.Transport, head: bytes) -> bool:
        """Write the answer to one request head; False when the connection is closed now."""
        lower = head.translate(_LOWER)
        if not lower.isascii():  # a control character or a byte that is not ASCII, anywhere
            transport.write(_BAD_REQUEST)
            transport.close()
            return False
        if head.startswith(_AUTH_LINE):
            route, http11 = _AUTH, True
        else:
            parsed = _parse_line(head)
            if parsed is None:
                transport.write(_BAD_REQUEST)
                transport.close()
                return False
            route, http11 = parsed
        if _CONTENT_LENGTH in lower or _TRANSFER_ENCODING in lower:
            # nginx sends no body (proxy_pass_request_body off); refuse anything else.
            at = lower.find(_TRANSFER_ENCODING)
            bad = at >= 0 and _value(lower, at, len(_TRANSFER_ENCODING)) != b""
            at = lower.find(_CONTENT_LENGTH)
            bad = bad or (at >= 0 and lower.find(_CONTENT_LENGTH, at + 1) >= 0)  # two lengths
            if bad or (at >= 0 and _value(lower, at, len(_CONTENT_LENGTH)) not in (b"0", b"")):
                transport.write(_BAD_REQUEST)
                transport.close()
                return False
        at = lower.find(_CONNECTION)
        if at < 0:
            keep_alive = http11
        else:
            value = _value(lower, at, len(_CONNECTION))
            if value == b"close":  # nginx without upstream keepalive (HTTP/1.0)
                keep_alive = False
            elif value == b"keep-alive":
                keep_alive = True
            else:  # a list such as "keep-alive, te"
                tokens = [t.strip() for t in value.split(b",")]
                keep_alive = b"close" not in tokens and (http11 or b"keep-alive" in tokens)
        if route == _AUTH:
            at = lower.find(_TOKEN)
            token = _value(head, at, len(_TOKEN)) if at >= 0 else b""
            if at >= 0 and lower.find(_TOKEN, at + 1) >= 0:
                token = b""  # two token headers: ambiguous, refused
            if self._token and hmac.compare_digest(token, self._token):
                _Counts.ok += 1
                out = self._cache.ok(keep_alive)
            else:
                _Counts.unauthorized += 1
                out = _UNAUTHORIZED[keep_alive]
        elif route == _PING:
            out = _PONG[keep_alive]
        else:
            out = _NOT_FOUND[keep_alive]
        transport.write(out)
        if not keep_alive:
            transport.close()
        return keep_alive


async def serve(
    signer: Signer,
    token: str,
    host: str,
    port: int,
    reuse_port: bool = False,
    limits: Limits | None = None,
) -> asyncio.Server:
    cache = SignatureCache(signer)
    cache.ok(True)  # sign once now: the first request pays no signing
    token_bytes = token.encode()
    loop = asyncio.get_running_loop()
    conns = _Connections(limits or Limits())
    server = await loop.create_server(
        lambda: _Protocol(cache, token_bytes, conns),
        host,
        port,
        reuse_port=reuse_port,
        backlog=_BACKLOG,
    )
    conns.start(server)
    log.info("registry_auth.listening", extra={"host": host, "port": port})
    return server
