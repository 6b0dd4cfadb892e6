"""Internal registry-auth listener (contract §3): a minimal asyncio HTTP/1.1 server.

nginx's `auth_request` subrequest gets `200 {"authenticated": true}` plus D2 headers over
`{ss58}:{nonce}:registry`. One signature per second is cached (a burst of layer pulls costs
one signing), the `X-Registry-Auth-Token` secret is compared in constant time, and nothing
else is served except `/ping` and `/metrics`. FastAPI tops out near 7k req/s on 2 cores; this
parser does what nginx needs and no more.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
from collections.abc import Callable
from typing import cast

from prometheus_client import Counter, generate_latest

from control_api.services.signing import Signer, d2_message

log = logging.getLogger(__name__)
AUTH_RESPONSES = Counter("registry_auth_responses_total", "Registry auth answers", ["status"])
_MAX_HEAD = 16 * 1024
_BACKLOG = 4096  # capped by net.core.somaxconn
_BODY = b'{"authenticated":true}'


class SignatureCache:
    """The whole 200 answer for the current second, signed at most once per second."""

    def __init__(self, signer: Signer, clock: Callable[[], float] = time.time) -> None:
        self._signer = signer
        self._clock = clock
        self._nonce = -1
        self._headers = b""
        self._ok: tuple[bytes, bytes] = (b"", b"")  # (close, keep-alive)

    def headers(self) -> bytes:
        nonce = int(self._clock())
        if nonce != self._nonce:
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
        return self._headers

    def ok(self, keep_alive: bool) -> bytes:
        """Pre-rendered `200` response bytes (status line, D2 headers, body)."""
        self.headers()
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


def _header(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """Value of the first `\\r\\n<name>` header (name lowercase, with its colon), or None."""
    start = lower.find(name)
    if start < 0:
        return None
    start += len(name)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class _Protocol(asyncio.Protocol):
    """One connection. No per-request logging or allocation beyond the header scan."""

    __slots__ = ("_buf", "_cache", "_token", "_transport")

    def __init__(self, cache: SignatureCache, token: bytes) -> None:
        self._cache = cache
        self._token = token
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio and uvloop set it already; make it explicit (issue 6: lost NODELAY
            # made keep-alive answers wait for delayed ACKs).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._reply(_TOO_LARGE, close=True)
                    buf = b""
                self._buf = buf
                return
            head, buf = buf[:end], buf[end + 4 :]
            if not self._handle(head):
                self._buf = b""
                return

    def _reply(self, payload: bytes, close: bool = False) -> None:
        assert self._transport is not None
        self._transport.write(payload)
        if close:
            self._transport.close()

    def _handle(self, head: bytes) -> bool:
        line_end = head.find(b"\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        parts = request_line.split(b" ")
        if len(parts) != 3:
            self._reply(_BAD_REQUEST, close=True)
            return False
        method, target, version = parts
        lower = head.lower()
        connection = _header(head, lower, b"\r\nconnection:")
        if version == b"HTTP/1.1":
            keep_alive = connection is None or connection.lower() != b"close"
        else:
            keep_alive = connection is not None and connection.lower() == b"keep-alive"
        for framing in (b"\r\ncontent-length:", b"\r\ntransfer-encoding:"):
            # nginx sends no body (proxy_pass_request_body off); refuse anything else.
            if _header(head, lower, framing) not in (None, b"0", b""):
                self._reply(_BAD_REQUEST, close=True)
                return False
        path = target.split(b"?", 1)[0]
        if path == b"/registry/auth" and method == b"GET":
            token = _header(head, lower, b"\r\nx-registry-auth-token:") or b""
            if self._token and hmac.compare_digest(token, self._token):
                _OK_COUNT.inc()
                out = self._cache.ok(keep_alive)
            else:
                _UNAUTH_COUNT.inc()
                out = _UNAUTHORIZED[keep_alive]
        elif path == b"/ping" and method == b"GET":
            out = _PONG[keep_alive]
        elif path == b"/metrics" and method == b"GET":
            body = generate_latest()
            out = _response("200 OK", body, b"", keep_alive).replace(
                b"application/json", b"text/plain; version=0.0.4", 1
            )
        else:
            out = _NOT_FOUND[keep_alive]
        self._reply(out, close=not keep_alive)
        return keep_alive


_OK_COUNT = AUTH_RESPONSES.labels("200")
_UNAUTH_COUNT = AUTH_RESPONSES.labels("401")


async def serve(
    signer: Signer, token: str, host: str, port: int, reuse_port: bool = False
) -> asyncio.Server:
    cache = SignatureCache(signer)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Protocol(cache, token.encode()),
        host,
        port,
        reuse_port=reuse_port,
        backlog=_BACKLOG,
    )
    log.info("registry_auth.listening", extra={"host": host, "port": port})
    return server
