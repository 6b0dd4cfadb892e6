"""The event bus gepetto reads (contract §5): `miner_events` pub/sub plus the stream
`miner_events_stream`, bounded and readable through a consumer group."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis
import redis.asyncio as aioredis
from control_api.clients.events import AsyncEventPublisher, EventPublisher

from tests.conftest import REDIS_URL


def test_stream_is_bounded_and_consumer_group_readable(redis_prefix: str) -> None:
    r = redis.Redis.from_url(REDIS_URL)
    stream = redis_prefix + "miner_events_stream"
    publisher = EventPublisher(r, redis_prefix, maxlen=100)
    for i in range(1000):
        publisher.publish("server_deleted", {"server_id": f"s{i}"})
    length = r.xlen(stream)
    assert 100 <= length < 300, length  # approximate trimming: whole nodes of ~100 entries

    r.xgroup_create(stream, "gepetto", id="0")
    read: Any = r.xreadgroup("gepetto", "worker-1", {stream: ">"}, count=5)
    entries = read[0][1]
    first = json.loads(entries[0][1][b"event"])
    assert first["event_type"] == "server_deleted" and set(first) == {"event_type", "event_data"}
    # unacknowledged entries stay pending for a restarted consumer; acked ones do not
    r.xack(stream, "gepetto", *[e[0] for e in entries[:3]])
    pending: Any = r.xpending(stream, "gepetto")
    assert pending["pending"] == 2
    r.close()


def test_async_publisher_writes_channel_and_stream_alike(redis_prefix: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        client = aioredis.Redis.from_url(REDIS_URL)
        sub = client.pubsub(ignore_subscribe_messages=True)
        await sub.subscribe(redis_prefix + "miner_events")
        await sub.get_message(timeout=1)
        publisher = AsyncEventPublisher(client, redis_prefix, maxlen=100)
        await publisher.publish("socket_reconnected", {"validator": "5X"})
        msg = await sub.get_message(timeout=2)
        entries: Any = await client.xrange(redis_prefix + "miner_events_stream")
        await sub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
        assert msg is not None
        return [json.loads(msg["data"]), json.loads(entries[0][1][b"event"])]

    channel, stream = asyncio.run(scenario())
    assert (
        channel == stream == {"event_type": "socket_reconnected", "event_data": {"validator": "5X"}}
    )
