"""Validator socket.io relay (contract §4.3): one client per validator, reconnecting forever,
whitelisted `miner_broadcast` reasons forwarded to Redis. With a lease (§5, `relay/lease.py`)
only the process holding `lease:socket:<hotkey>` connects, so events reach the stream once.
A Redis outage buffers events; one longer than the lease's local share of its TTL also closes
the socket (the lease can no longer be confirmed) until Redis is back."""

from __future__ import annotations

import asyncio
import logging
import random
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import redis.exceptions
import socketio

from control_api.clients.events import AsyncEventPublisher
from control_api.core.config import Settings, ValidatorConfig
from control_api.core.signing import Signer, d2_headers, keypair_from_seed
from control_api.relay.lease import Lease

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
LEASE_KEY = "lease:socket:{hotkey}"
AUTH_FAILED_MIN_WAIT_S = 60.0


def socket_proxy(url: str) -> str | None:
    """The proxy for a validator socket URL per HTTPS_PROXY/HTTP_PROXY and NO_PROXY (contract
    §1.1). aiohttp on its own would only read WSS_PROXY/WS_PROXY for a websocket."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host or urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    http_scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return proxies.get(parts.scheme) or proxies.get(http_scheme)


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
        auth_failed_wait_s: float = AUTH_FAILED_MIN_WAIT_S,
        buffer_max: int = 10_000,
        lease: Lease | None = None,
        flush_s: float = 2.0,
    ) -> None:
        self._v = validator
        self._signer = signer
        self._publish = publish
        self._min = min_backoff_s
        self._max = max_backoff_s
        self._auth_failed_wait = auth_failed_wait_s
        self._lease = lease
        self._flush_s = flush_s
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
        """Forever; with a lease, connect only while holding it (a standby waits)."""
        drain = asyncio.create_task(self._drain())
        try:
            if self._lease is None:
                await self._sessions()
            else:
                await self._lease.run_while_held(self._sessions)
        finally:
            await self._flushed(self._flush_s)
            drain.cancel()

    async def _flushed(self, timeout_s: float) -> None:
        """On stop, give the drain a bounded time to publish what was received."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._buffer and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if self._buffer:
            log.warning("relay.unpublished", extra={"dropped": len(self._buffer)})

    async def _sessions(self) -> None:
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
            self.authenticated.clear()

    async def _session(self) -> bool:
        """One connection; returns True when the validator refused our authentication."""
        proxy = socket_proxy(self._v.socket)
        http = aiohttp.ClientSession()  # ours, so a failed connect cannot leak it
        sio = socketio.AsyncClient(
            reconnection=False,
            logger=False,
            engineio_logger=False,
            handle_sigint=False,
            ssl_verify=True,
            http_session=http,
            websocket_extra_options={"proxy": proxy} if proxy else None,
        )
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
            await http.close()
        return auth_failed


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """`python -m control_api relay`: one leased relay per validator until `stop` is set;
    then each closes its socket and releases its lease so a standby takes over at once."""
    signer = keypair_from_seed(settings.miner_seed.get_secret_value())
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5)
    publisher = AsyncEventPublisher(client, maxlen=settings.event_stream_maxlen)
    relays = [
        Relay(
            v,
            signer,
            publisher.publish,
            lease=Lease(client, LEASE_KEY.format(hotkey=v.hotkey), settings.relay_lease_ttl_s),
        )
        for v in settings.validators.supported
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    stopped = asyncio.create_task(stop.wait())
    log.info("relay.started", extra={"validators": len(relays)})
    try:
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stopped}:
            task.result()  # a relay never ends on its own: surface its error
    finally:
        for task in [stopped, *tasks]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        log.info("relay.stopped")
