"""Redis: event publishing (pub/sub channel + bounded durable stream) and the replay cache."""

from __future__ import annotations

import json
from typing import Any

import redis
import redis.asyncio as aioredis

CHANNEL = "miner_events"
STREAM = "miner_events_stream"


def encode_event(event_type: str, event_data: dict[str, Any]) -> str:
    return json.dumps({"event_type": event_type, "event_data": event_data})


class EventPublisher:
    """Publishes to the `miner_events` channel (contract §5) and appends to a bounded Redis
    Stream, so a scheduler that was restarting reads what it missed through a consumer group."""

    def __init__(self, client: redis.Redis, prefix: str = "", maxlen: int = 100_000) -> None:
        self._r = client
        self._channel = prefix + CHANNEL
        self._stream = prefix + STREAM
        self._maxlen = maxlen

    def publish(self, event_type: str, event_data: dict[str, Any]) -> None:
        payload = encode_event(event_type, event_data)
        pipe = self._r.pipeline(transaction=False)
        pipe.xadd(self._stream, {"event": payload}, maxlen=self._maxlen, approximate=True)
        pipe.publish(self._channel, payload)
        pipe.execute()


class AsyncEventPublisher:
    def __init__(self, client: aioredis.Redis, prefix: str = "", maxlen: int = 100_000) -> None:
        self._r = client
        self._channel = prefix + CHANNEL
        self._stream = prefix + STREAM
        self._maxlen = maxlen

    async def publish(self, event_type: str, event_data: dict[str, Any]) -> None:
        payload = encode_event(event_type, event_data)
        pipe = self._r.pipeline(transaction=False)
        pipe.xadd(self._stream, {"event": payload}, maxlen=self._maxlen, approximate=True)
        pipe.publish(self._channel, payload)
        await pipe.execute()


class RedisReplayStore:
    """`SET key 1 NX EX ttl`: true the first time a key is seen, shared by all processes."""

    def __init__(self, client: aioredis.Redis, prefix: str = "") -> None:
        self._r = client
        self._prefix = prefix

    async def first_use(self, key: str, ttl_s: int) -> bool:
        return bool(await self._r.set(self._prefix + key, b"1", nx=True, ex=ttl_s))
