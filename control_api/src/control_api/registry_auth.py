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
import time
from collections.abc import Callable
from typing import cast

from prometheus_client import Counter, generate_latest

from control_api.services.signing import Signer, d2_message

log = logging.getLogger(__name__)
AUTH_RESPONSES = Counter("registry_auth_responses_total", "Registry auth answers", ["status"])
_MAX_HEAD = 16 * 1024
_BODY = b'{"authenticated":true}'


class SignatureCache:
    """Signature for the current second, signed at most once per second."""

    def __init__(self, signer: Signer, clock: Callable[[], float] = time.time) -> None:
        self._signer = signer
        self._clock = clock
        self._nonce = -1
        self._headers = b""

    def headers(self) -> bytes:
        nonce = int(self._clock())
        if nonce != self._nonce:
            me = self._signer.ss58_address
            sig = self._signer.sign(d2_message(me, str(nonce), "registry")).hex()
            self._headers = (
                f"X-Chutes-Hotkey: {me}\r\nX-Chutes-Nonce: {nonce}\r\nX-Chutes-Signature: {sig}\r\n"
            ).encode()
            self._nonce = nonce
        return self._headers


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


class _Protocol(asyncio.Protocol):
    def __init__(self, cache: SignatureCache, token: bytes) -> None:
        self._cache = cache
        self._token = token
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    self._reply(
                        _response("431 Request Header Fields Too Large", b"{}", keep_alive=False),
                        close=True,
                    )
                return
            head, self._buf = self._buf[:end], self._buf[end + 4 :]
            if not self._handle(head):
                return

    def _reply(self, payload: bytes, close: bool = False) -> None:
        assert self._transport is not None
        self._transport.write(payload)
        if close:
            self._transport.close()

    def _handle(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            self._reply(_response("400 Bad Request", b"{}", keep_alive=False), close=True)
            return False
        method, target, version = parts
        token = b""
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"x-registry-auth-token":
                token = value.strip()
            elif lname == b"connection":
                v = value.strip().lower()
                keep_alive = v == b"keep-alive" or (keep_alive and v != b"close")
            elif lname in (b"content-length", b"transfer-encoding") and value.strip() not in (
                b"0",
                b"",
            ):
                # nginx sends no body (proxy_pass_request_body off); refuse anything else.
                self._reply(_response("400 Bad Request", b"{}", keep_alive=False), close=True)
                return False
        path = target.split(b"?", 1)[0]
        if path == b"/registry/auth" and method == b"GET":
            if self._token and hmac.compare_digest(token, self._token):
                AUTH_RESPONSES.labels("200").inc()
                out = _response("200 OK", _BODY, self._cache.headers(), keep_alive)
            else:
                AUTH_RESPONSES.labels("401").inc()
                out = _response("401 Unauthorized", b'{"detail":"unauthorized"}', b"", keep_alive)
        elif path == b"/ping" and method == b"GET":
            out = _response("200 OK", b'{"message":"pong"}', b"", keep_alive)
        elif path == b"/metrics" and method == b"GET":
            body = generate_latest()
            out = _response("200 OK", body, b"", keep_alive).replace(
                b"application/json", b"text/plain; version=0.0.4", 1
            )
        else:
            out = _response("404 Not Found", b'{"detail":"not found"}', b"", keep_alive)
        self._reply(out, close=not keep_alive)
        return keep_alive


async def serve(
    signer: Signer, token: str, host: str, port: int, reuse_port: bool = False
) -> asyncio.Server:
    cache = SignatureCache(signer)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Protocol(cache, token.encode()), host, port, reuse_port=reuse_port, backlog=2048
    )
    log.info("registry_auth.listening", extra={"host": host, "port": port})
    return server
