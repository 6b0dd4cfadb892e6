"""The scheduler's stream consumer against the real Redis: per-key order with parallelism
across keys, retries with backoff, poison parked with a reason, events published while no
scheduler ran, and entries a killed scheduler left unacknowledged."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from control_api.clients.events import EventPublisher
from control_api.scheduler.stream import (
    EventConsumer,
    KeyedExecutor,
    Permanent,
    StreamConfig,
    event_keys,
    list_parked,
    requeue,
)
from control_api.schemas.gepetto import Event, parse_event

from tests.conftest import REDIS_URL


@pytest.fixture()
def publisher(redis_prefix: str) -> Iterator[EventPublisher]:
    client = redis.Redis.from_url(REDIS_URL)
    yield EventPublisher(client, redis_prefix)
    client.close()


def cfg(prefix: str, **kw: Any) -> StreamConfig:
    base: dict[str, Any] = {"prefix": prefix, "block_ms": 50, "backoff_s": 0.01}
    return StreamConfig(**(base | kw))


class Recorder:
    """A handler that records (start, end, event) and can be scripted to fail."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.runs: list[tuple[float, float, str, str]] = []
        self.failures: dict[str, int] = {}  # chute id -> failures left
        self.permanent: set[str] = set()
        self.block: asyncio.Event | None = None
        self.block_keys: set[str] | None = None  # None: block every event

    async def __call__(self, event: Event) -> None:
        d: Any = event.event_data
        key = getattr(d, "chute_id", "") or ""
        start = time.monotonic()
        if self.block is not None and (self.block_keys is None or key in self.block_keys):
            await self.block.wait()
        await asyncio.sleep(self.delay_s)
        if key in self.permanent:
            raise Permanent("bad chute")
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            raise RuntimeError("transient")
        self.runs.append((start, time.monotonic(), event.event_type, f"{key}:{d.version}"))


async def consume_until(consumer: EventConsumer, done: Any, timeout: float = 10.0) -> None:
    stop = asyncio.Event()
    task = asyncio.ensure_future(consumer.run(stop))
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "consumer did not finish in time"
        assert not task.done(), task.exception()
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)


def chute_event(chute: str, version: int) -> tuple[str, dict[str, Any]]:
    return "chute_updated", {"chute_id": chute, "version": str(version), "validator": "v"}


def test_event_keys() -> None:
    def keys(t: str, **d: Any) -> tuple[str, ...]:
        return event_keys(parse_event(json.dumps({"event_type": t, "event_data": d})))

    assert keys("job_created", job_id="j", chute_id="c") == ("chute:c", "job:j")
    assert keys("job_deleted", job_id="j", instance_id="i") == ("job:j", "instance:i")
    assert keys("instance_verified", instance_id="i") == ("instance:i",)
    assert keys("server_deleted", server_id="s") == ("server:s",)
    assert keys("undeploy_requested", deployment_ids=["a", "b"]) == ("deployment:a", "deployment:b")
    assert keys("image_updated", image="x", chute_ids=["a", "b"]) == ("chute:a", "chute:b")
    assert keys("socket_reconnected", validator="v") == ("reconcile",)


def test_keyed_executor_orders_per_key_and_overlaps_keys() -> None:
    async def main() -> list[str]:
        ex = KeyedExecutor(4)
        log: list[str] = []

        def work(name: str, pause: float) -> Any:
            async def run() -> None:
                log.append(f"start {name}")
                await asyncio.sleep(pause)
                log.append(f"end {name}")

            return run

        ex.submit(["a"], work("a1", 0.05))
        ex.submit(["b"], work("b1", 0.01))
        ex.submit(["a", "b"], work("ab", 0.0))  # waits for a1 and b1
        ex.submit(["b"], work("b2", 0.0))  # waits for ab
        await ex.drain()
        return log

    log = asyncio.run(main())
    assert log.index("start b1") < log.index("end a1")  # different keys overlap
    assert log.index("start ab") > max(log.index("end a1"), log.index("end b1"))
    assert log.index("start b2") > log.index("end ab")


def test_order_per_chute_parallel_across_chutes(
    redis_prefix: str, publisher: EventPublisher
) -> None:
    for v in range(4):
        for chute in ("a", "b", "c"):
            publisher.publish(*chute_event(chute, v))
    rec = Recorder(delay_s=0.03)

    async def main() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        consumer = EventConsumer(client, cfg(redis_prefix, concurrency=3), rec)
        await consume_until(consumer, lambda: len(rec.runs) == 12)
        info = await client.xpending(consumer.cfg.stream, consumer.cfg.group)
        assert info["pending"] == 0
        await client.aclose()

    asyncio.run(main())
    for chute in ("a", "b", "c"):
        mine = [r for r in rec.runs if r[3].startswith(chute)]
        assert [r[3] for r in mine] == [f"{chute}:{v}" for v in range(4)]
        assert all(x[1] <= y[0] for x, y in zip(mine, mine[1:], strict=False))  # sequential
    first = sorted(rec.runs)[:3]
    assert len({r[3][0] for r in first}) == 3  # the three chutes started together
    assert max(r[0] for r in first) < min(r[1] for r in first)


def test_retries_with_backoff_hold_back_only_their_key(
    redis_prefix: str, publisher: EventPublisher
) -> None:
    publisher.publish(*chute_event("flaky", 1))
    publisher.publish(*chute_event("flaky", 2))
    publisher.publish(*chute_event("fine", 1))
    rec = Recorder()
    rec.failures["flaky"] = 2
    pauses: list[float] = []

    async def sleep(s: float) -> None:
        pauses.append(s)
        await asyncio.sleep(0.05)

    async def main() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        consumer = EventConsumer(client, cfg(redis_prefix, backoff_s=1.0), rec, sleep=sleep)
        await consume_until(consumer, lambda: len(rec.runs) == 3)
        assert consumer.parked == 0
        await client.aclose()

    asyncio.run(main())
    assert [r[3] for r in rec.runs] == ["fine:1", "flaky:1", "flaky:2"]
    assert len(pauses) == 2 and 0.5 <= pauses[0] <= 1.0 and 1.0 <= pauses[1] <= 2.0


def test_poison_is_parked_with_a_reason_and_the_stream_moves_on(
    redis_prefix: str, publisher: EventPublisher
) -> None:
    raw = redis.Redis.from_url(REDIS_URL)
    stream = redis_prefix + "miner_events_stream"
    raw.xadd(stream, {"event": b"{not json"})
    raw.xadd(stream, {"event": json.dumps({"event_type": "chute_exploded", "event_data": {}})})
    raw.xadd(stream, {"event": json.dumps({"event_type": "job_created", "event_data": {}})})
    raw.xadd(stream, {"other": b"x"})
    publisher.publish(*chute_event("always", 1))  # fails every time
    publisher.publish(*chute_event("perm", 1))  # Permanent
    publisher.publish(*chute_event("ok", 1))
    rec = Recorder()
    rec.failures["always"] = 99
    rec.permanent.add("perm")

    async def main() -> list[dict[str, str]]:
        client = aioredis.Redis.from_url(REDIS_URL)
        consumer = EventConsumer(client, cfg(redis_prefix, max_attempts=3), rec)
        await consume_until(consumer, lambda: consumer.parked == 6 and len(rec.runs) == 1)
        parked = await list_parked(client, redis_prefix)
        info = await client.xpending(consumer.cfg.stream, consumer.cfg.group)
        assert info["pending"] == 0
        await client.aclose()
        return parked

    parked = asyncio.run(main())
    raw.close()
    reasons = sorted(p["reason"] for p in parked)
    assert [r.split(":")[0] for r in reasons] == [
        "failed 3 times", "malformed event", "malformed event", "malformed event",
        "malformed event", "permanent",
    ]  # fmt: skip
    assert any("job_id" in r for r in reasons)  # names the missing field
    assert rec.runs[0][3] == "ok:1"


def test_events_published_while_stopped_are_processed_after_start(
    redis_prefix: str, publisher: EventPublisher
) -> None:
    rec = Recorder()

    async def run_once(n: int) -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        consumer = EventConsumer(client, cfg(redis_prefix), rec)
        await consume_until(consumer, lambda: len(rec.runs) == n)
        await client.aclose()

    publisher.publish(*chute_event("a", 1))  # before the group exists at all
    asyncio.run(run_once(1))
    for v in (2, 3, 4):  # nobody is reading now
        publisher.publish(*chute_event("a", v))
    asyncio.run(run_once(4))
    assert [r[3] for r in rec.runs] == ["a:1", "a:2", "a:3", "a:4"]


def test_a_killed_scheduler_leaves_nothing_behind(
    redis_prefix: str, publisher: EventPublisher
) -> None:
    """The first consumer reads the entries, its handlers hang, it is cancelled without
    acknowledging (a SIGKILL looks the same to Redis); a new consumer with another name takes
    every entry over and handles it; nothing stays pending."""
    for v in range(5):
        publisher.publish(*chute_event("a", v))
    stuck = Recorder()
    stuck.block = asyncio.Event()  # never set
    rec = Recorder()

    async def main() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        first = EventConsumer(client, cfg(redis_prefix, consumer="old"), stuck)
        task = asyncio.ensure_future(first.run())
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        info = await client.xpending(first.cfg.stream, first.cfg.group)
        assert info["pending"] == 5
        second = EventConsumer(client, cfg(redis_prefix, consumer="new"), rec)
        await consume_until(second, lambda: len(rec.runs) == 5)
        info = await client.xpending(second.cfg.stream, second.cfg.group)
        assert info["pending"] == 0
        await client.aclose()

    asyncio.run(main())
    assert [r[3] for r in rec.runs] == [f"a:{v}" for v in range(5)]


def test_an_entry_that_keeps_killing_the_scheduler_is_parked(
    redis_prefix: str, publisher: EventPublisher
) -> None:
    publisher.publish(*chute_event("killer", 1))
    publisher.publish(*chute_event("ok", 1))
    rec = Recorder()

    async def main() -> list[dict[str, str]]:
        client = aioredis.Redis.from_url(REDIS_URL)
        c = cfg(redis_prefix, max_deliveries=2)
        for life in range(2):  # two lives die while handling "killer"
            blocked = Recorder()
            blocked.block = asyncio.Event()
            blocked.block_keys = {"killer"}
            consumer = EventConsumer(
                client, StreamConfig(**{**c.__dict__, "consumer": f"l{life}"}), blocked
            )
            task = asyncio.ensure_future(consumer.run())
            await asyncio.sleep(0.2)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        last = EventConsumer(client, StreamConfig(**{**c.__dict__, "consumer": "last"}), rec)
        await consume_until(last, lambda: last.parked == 1)
        parked = await list_parked(client, redis_prefix)
        assert await requeue(client, parked[0]["id"], redis_prefix)
        again = EventConsumer(client, StreamConfig(**{**c.__dict__, "consumer": "again"}), rec)
        await consume_until(again, lambda: len(rec.runs) == 1)
        await client.aclose()
        return parked

    parked = asyncio.run(main())
    assert parked[0]["reason"].startswith("delivered ")
    assert [r[3] for r in rec.runs] == ["killer:1"]  # "ok" was handled in the first life
