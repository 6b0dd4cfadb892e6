"""Validator socket.io relay (contract §4.3): one client per validator, reconnecting forever,
whitelisted `miner_broadcast` reasons forwarded to Redis; a Redis outage buffers, never drops."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions
import socketio

from control_api.config import ValidatorConfig
from control_api.services.signing import Signer, d2_headers

log = logging.getLogger(__name__)
RELAY_REASONS = frozenset(
    {
        "gpu_verified",
        "chute_created",
        "chute_updated",
        "chute_deleted",
        "bounty_change",
        "image_created",
        "image_deleted",
        "image_updated",
        "instance_created",
        "instance_verified",
        "instance_activated",
        "instance_deleted",
        "rolling_update",
        "job_created",
        "job_deleted",
    }
)
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]


def to_event(reason: object, data: object, validator: str) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(reason, str) or reason not in RELAY_REASONS or not isinstance(data, dict):
        return None
    return reason, {**data, "validator": validator}


class Relay:
    def __init__(
        self,
        validator: ValidatorConfig,
        signer: Signer,
        publish: Publish,
        *,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        auth_failed_wait_s: float = 60.0,
        buffer_max: int = 10_000,
    ) -> None:
        self._v = validator
        self._signer = signer
        self._publish = publish
        self._min = min_backoff_s
        self._max = max_backoff_s
        self._auth_failed_wait = auth_failed_wait_s
        self._buffer: deque[tuple[str, dict[str, Any]]] = deque(maxlen=buffer_max)
        self._wake = asyncio.Event()
        self.authenticated = asyncio.Event()
        self.connects = 0

    def _enqueue(self, event_type: str, data: dict[str, Any]) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            log.warning("relay.buffer_full", extra={"validator": self._v.hotkey})
        self._buffer.append((event_type, data))
        self._wake.set()

    async def _drain(self) -> None:
        delay = self._min
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                event_type, data = self._buffer[0]
                try:
                    await self._publish(event_type, data)
                except (redis.exceptions.RedisError, OSError):
                    log.warning("relay.redis_unavailable", extra={"buffered": len(self._buffer)})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max)
                    continue
                delay = self._min
                self._buffer.popleft()

    async def run(self) -> None:
        drain = asyncio.create_task(self._drain())
        delay = self._min
        try:
            while True:
                auth_failed = await self._session()
                wait = self._auth_failed_wait if auth_failed else delay
                if self.authenticated.is_set():
                    delay = self._min
                else:
                    delay = min(delay * 2, self._max)
                self.authenticated.clear()
                await asyncio.sleep(wait * random.uniform(1.0, 1.25))
        finally:
            drain.cancel()

    async def _session(self) -> bool:
        """One connection; returns True when the validator refused our authentication."""
        sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
        auth_failed = False

        @sio.event  # type: ignore[untyped-decorator]
        async def connect() -> None:
            await sio.emit("authenticate", d2_headers(self._signer, "sockets"))

        @sio.on("auth_success")  # type: ignore[untyped-decorator]
        async def auth_success(_: object = None) -> None:
            self.connects += 1
            self.authenticated.set()
            log.info("relay.authenticated", extra={"validator": self._v.hotkey})
            self._enqueue("socket_reconnected", {"validator": self._v.hotkey})

        @sio.on("auth_failed")  # type: ignore[untyped-decorator]
        async def auth_failed_handler(_: object = None) -> None:
            nonlocal auth_failed
            auth_failed = True
            log.warning("relay.auth_failed", extra={"validator": self._v.hotkey})
            await sio.disconnect()

        @sio.on("miner_broadcast")  # type: ignore[untyped-decorator]
        async def miner_broadcast(payload: object) -> None:
            if not isinstance(payload, dict):
                return
            event = to_event(payload.get("reason"), payload.get("data"), self._v.hotkey)
            if event is not None:
                self._enqueue(*event)

        try:
            await sio.connect(self._v.socket, transports=["websocket"], socketio_path="socket.io")
            await sio.wait()
        except (socketio.exceptions.ConnectionError, OSError) as exc:
            log.info("relay.connect_failed", extra={"validator": self._v.hotkey, "error": str(exc)})
        finally:
            if sio.connected:
                await sio.disconnect()
        return auth_failed
