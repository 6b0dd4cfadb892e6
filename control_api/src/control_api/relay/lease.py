"""Single-active leases in Redis (contract §5: `lease:socket:<hotkey>`).

A lease is a key holding one process's random token with a TTL. `hold()` is one Lua script:
extend the key if it holds our token, take it if it is free, else report that someone else has
it, so a process never extends (or, in `release()`, deletes) another process's lease.

`run_while_held(work)` competes for the lease, runs `work` while it is held and cancels it when
the lease is lost or can no longer be confirmed: each successful hold is trusted only until
`LOCAL_SHARE` of the TTL after it was sent, so the holder stops before the key can expire in
Redis and a standby can take it. A Redis outage therefore stops the work after that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import redis.exceptions

log = logging.getLogger(__name__)
LOCAL_SHARE = 0.8

_HOLD = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if not v then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def new_token() -> str:
    """Unique per holder; host and pid first so an operator can see who holds a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Lease:
    def __init__(
        self,
        client: aioredis.Redis,
        key: str,
        ttl_s: float,
        *,
        token: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.token = token or new_token()
        self.ttl_s = ttl_s
        self.renew_s = ttl_s / 3
        self.valid_until = 0.0
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._clock = clock
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    @property
    def held(self) -> bool:
        return self._clock() < self.valid_until

    async def hold(self) -> bool:
        """Take or extend the lease. False: another holder has it. Raises RedisError when
        Redis does not answer (the lease is then neither confirmed nor known to be lost)."""
        sent = self._clock()
        ok = bool(await self._hold(keys=[self.key], args=[self.token, self._ttl_ms]))
        self.valid_until = sent + self.ttl_s * LOCAL_SHARE if ok else 0.0
        return ok

    async def release(self) -> None:
        """Delete the key if it still holds our token (best effort: it expires anyway)."""
        self.valid_until = 0.0
        try:
            await asyncio.wait_for(
                self._release(keys=[self.key], args=[self.token]), timeout=self.renew_s
            )
        except (redis.exceptions.RedisError, OSError, TimeoutError):
            log.warning("lease.release_failed", extra={"key": self.key})

    async def _try_hold(self) -> bool | None:
        """`hold()` bounded by what is left of the local validity (a renewal that has not
        answered by then cannot keep the work going); None = unknown."""
        left = self.valid_until - self._clock()
        budget = left if left > 0 else self.renew_s
        try:
            return await asyncio.wait_for(self.hold(), timeout=budget)
        except (redis.exceptions.RedisError, OSError, TimeoutError):
            return None

    async def run_while_held(self, work: Callable[[], Awaitable[None]]) -> None:
        """Forever: wait to hold the lease, run `work` while it is held. Releases on exit."""
        try:
            while True:
                if not await self._try_hold():
                    await asyncio.sleep(self.renew_s)
                    continue
                log.info("lease.acquired", extra={"key": self.key})
                await self._work_while_held(work)
                log.warning("lease.lost", extra={"key": self.key})
        finally:
            await asyncio.shield(self.release())

    async def _work_while_held(self, work: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(work())
        try:
            while True:
                left = self.valid_until - self._clock()
                if left <= 0:
                    return
                await asyncio.wait({task}, timeout=min(self.renew_s, left))
                if task.done():
                    task.result()  # work never returns on its own: surface its error
                    return
                if await self._try_hold() is False:
                    return
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
