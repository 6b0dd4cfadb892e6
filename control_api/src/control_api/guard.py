"""What the API refuses before it authenticates anything (issue #16): request heads over
MAX_HEAD_BYTES (431) or slower than HEADER_TIMEOUT_S (408), bodies over MAX_BODY_BYTES (413) or
slower than BODY_TIMEOUT_S (408), and paths or query strings that are not clean UTF-8 text (400).

Two layers, because uvicorn's httptools protocol buffers a whole head before the application
sees any of it:
- `guarded_protocol()`: uvicorn's httptools protocol with a byte budget for each request head,
  checked as the bytes arrive, and a head deadline that incoming bytes do not extend;
- `RequestGuard`: pure ASGI middleware, first in the application: Content-Length checked before
  a byte of the body is read, the body counted and timed as the application reads it, and the
  path and query string checked once for every route, so no handler and no SQL ever sees a
  NUL byte or another control character.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import struct
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_api.core.config import Settings
from control_api.core.text import clean_target

log = logging.getLogger(__name__)

_CLOSE = {"Connection": "close"}


def _json_response(status: int, detail: str) -> tuple[Message, Message]:
    body = ('{"detail":"' + detail + '"}').encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class RequestGuard:
    """First ASGI layer of the API: target check, body size and body time limits."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        if not clean_target(raw_path, scope.get("query_string", b"")):
            await self._refuse(send, 400, "malformed request target")
            return
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1  # httptools rejects worse
                break
        if length is not None and (length < 0 or length > self.max_body):
            await self._refuse(send, 413, "request body too large")
            return
        await self.app(scope, self._limited(receive), send)

    async def _refuse(self, send: Send, status: int, detail: str) -> None:
        start, body = _json_response(status, detail)
        await send(start)
        await send(body)

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that counts the body and bounds the time until its last byte; once the
        body is complete it is passed through untouched (a streaming response waits on it for
        the disconnect, however long that takes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        state = {"read": 0, "done": False}

        async def limited() -> Message:
            if state["done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                raise HTTPException(408, "request body timeout", headers=_CLOSE) from None
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > self.max_body:
                    raise HTTPException(413, "request body too large", headers=_CLOSE)
                state["done"] = not message.get("more_body", False)
            else:
                state["done"] = True
            return message

        return limited


def guarded_protocol(
    max_head_bytes: int, header_timeout_s: float, send_timeout_s: float = 30.0
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a byte budget and a deadline for every request head.

    The budget counts the bytes received since the previous request's body ended (or since the
    connection opened) until the head is complete; the bytes that would exceed it are never
    given to the parser: the answer is 431 and the connection closes. The deadline starts when
    the connection opens and again when a response completes, and is cancelled only by a
    complete head, so a client that trickles bytes cannot hold the connection (uvicorn's own
    keep-alive timer restarts with every byte).

    Pipelined requests are parsed one at a time: while one waits behind the request being
    answered, what follows stays unparsed bytes and reading stops (uvicorn queued every request
    of a segment: 40 connections sending 256 KiB of pipelined `/ping` each took +530 MB). A
    client that reads nothing of its answers for `send_timeout_s` (the transport's buffer stays
    above its high-water mark) is cut off, so it cannot hold a connection and its buffers."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    too_large = _raw_response(431, "Request Header Fields Too Large", "request head too large")
    too_slow = _raw_response(408, "Request Timeout", "request head timeout")
    # Bytes kept unparsed behind a waiting request: one read (uvloop reads up to 256 KiB) and
    # more; a peer that sends past this without reading its answers is cut off.
    max_held = max(1 << 20, 4 * max_head_bytes)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _in_head = True
        _head_timer: asyncio.TimerHandle | None = None
        _held: bytes | None = None  # received, not parsed: they follow a waiting request
        _held_at = 0  # where the unparsed bytes of `_held` begin
        _send_timer: asyncio.TimerHandle | None = None
        _running: Any = None  # the cycle being answered

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._send_timer is not None:
                self._send_timer.cancel()
            super().connection_lost(exc)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._send_timer is None:
                self._send_timer = self.loop.call_later(send_timeout_s, self._send_timeout)

        def resume_writing(self) -> None:
            if self._send_timer is not None:
                self._send_timer.cancel()
                self._send_timer = None
            super().resume_writing()

        def _send_timeout(self) -> None:
            # No cycle writes again (uvicorn's connection_lost marks only the newest one, not
            # the one being answered), then a reset: the kernel drops what it still buffers.
            for cycle in (self._running, self.cycle, *(c for c, _ in self.pipeline)):
                if cycle is not None and not cycle.response_complete:
                    cycle.disconnected = True
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being answered; the head timer restarts after it
            if self._head_bytes:
                self.transport.write(too_slow)
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._held is not None:  # a request already waits: keep the bytes unparsed
                self._hold(self._held[self._held_at :] + data, 0)
                return
            self._feed(data, 0)

        def _feed(self, data: bytes, at: int) -> None:
            """Parse `data` from `at`, one request head at a time (memoryview slices: a long
            pipeline is never copied once per request)."""
            view = memoryview(data)
            while at < len(data):
                if self.pipeline:
                    # A request waits behind the one being answered: parse nothing more until
                    # it starts (uvicorn would queue every request of the segment, ~2 KB each
                    # for ~25 bytes sent).
                    self._hold(data, at)
                    return
                if self._in_head:
                    room = max_head_bytes - self._head_bytes
                    if room <= 0:  # the budget is spent and the head is still not complete
                        self.transport.write(too_large)
                        self.transport.close()
                        return
                else:  # body bytes: RequestGuard limits those
                    room = len(data) - at
                # Up to the end of the next head at most, so a pipelined request is parsed
                # only after the previous one has been answered.
                end = data.find(b"\r\n\r\n", at, at + room)
                cut = end + 4 if end >= 0 else min(at + room, len(data))
                if self._in_head:
                    self._head_bytes += cut - at
                super().data_received(view[at:cut])  # type: ignore[arg-type]  # httptools reads any buffer
                at = cut
                if self.transport.is_closing():
                    return

        def _hold(self, data: bytes, at: int) -> None:
            self.flow.pause_reading()
            if len(data) - at > max_held:  # the peer sends on while its answers are not read
                self._held = None
                self.transport.close()
                return
            self._held, self._held_at = data, at

        def _release(self) -> None:
            data, self._held = self._held, None
            if data is not None and not self.transport.is_closing():
                self._feed(data, self._held_at)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            queued = len(self.pipeline)
            super().on_headers_complete()
            if len(self.pipeline) == queued:  # started at once, not queued
                self._running = self.cycle

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True  # what follows is the next request's head
            self._head_bytes = 0

        def on_response_complete(self) -> None:
            waiting = self.pipeline[-1][0] if self.pipeline else None
            super().on_response_complete()  # starts the waiting request, if there is one
            if waiting is not None:
                self._running = waiting
            if self._held is not None and not self.transport.is_closing():
                self.loop.call_soon(self._release)
            elif self.timeout_keep_alive_task is not None:  # idle now (nothing pipelined)
                self._arm()

    return GuardedHttpToolsProtocol


def uvicorn_config(app: ASGIApp, settings: Settings, host: str, port: int) -> Any:
    """The API's uvicorn configuration: the guarded protocol, the idle timeout, no access log."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        loop="auto",
        lifespan="on",
        http=guarded_protocol(
            settings.max_head_bytes, settings.header_timeout_s, settings.send_timeout_s
        ),
        timeout_keep_alive=max(1, round(settings.api_idle_timeout_s)),
        ws="none",  # no WebSocket route: an Upgrade request is answered as plain HTTP
    )


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = ('{"detail":"' + detail + '"}').encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


def raise_nofile_limit() -> int:
    """Raise the soft descriptor limit to the hard one (containerd 2 starts containers with a
    soft limit of 1024); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("limits.nofile_unchanged", extra={"soft": soft, "hard": hard})
    return int(soft if soft != resource.RLIM_INFINITY else target)
