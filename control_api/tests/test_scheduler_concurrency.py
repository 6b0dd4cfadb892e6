"""Many concurrent deploys through the whole pipeline (Redis stream -> consumer with 8
handlers -> strategy -> claim -> launch -> Kubernetes stand-in), with a strategy that sends
every placement to the same server first so claims collide: no GPU is ever double-booked,
every deployment holds exactly its chute's GPUs, and every pod sees exactly those GPUs."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from typing import Any

import psycopg2
import pytest
import redis
import redis.asyncio as aioredis
from control_api.clients.events import EventPublisher
from control_api.db import claims
from control_api.scheduler.model import PlacementRequest, Snapshot
from control_api.scheduler.reconcile import visible_gpu_ids
from control_api.scheduler.strategies.baseline import BaselineStrategy
from control_api.scheduler.stream import EventConsumer, StreamConfig

from tests.conftest import REDIS_URL, SettingsFactory
from tests.sched_rig import Rig, make_rig, rows
from tests.sched_standins import remote_chute
from tests.seed import add_server


class Herd(BaselineStrategy):
    """Everybody picks the fullest-looking first server with room: maximal contention."""

    def choose_server(self, snap: Snapshot, req: PlacementRequest) -> str | None:
        fits = [s for s in snap.servers.values() if s.free >= req.gpu_count]
        return min(fits, key=lambda s: s.server_id).server_id if fits else None


def drain(rig: Rig, prefix: str, events: int) -> EventConsumer:
    """Run the stream consumer (8 handlers) with the rig's scheduler until `events` entries
    are handled or parked."""

    async def consume() -> EventConsumer:
        client = aioredis.Redis.from_url(REDIS_URL)
        cfg = StreamConfig(prefix=prefix, block_ms=50, concurrency=8)
        consumer = EventConsumer(client, cfg, rig.scheduler.handle)
        stop = asyncio.Event()
        task = asyncio.ensure_future(consumer.run(stop))
        deadline = time.monotonic() + 120
        while consumer.handled + consumer.parked < events:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        stop.set()
        await task
        await client.aclose()
        return consumer

    return asyncio.run(consume())


def test_concurrent_deploys_never_double_book(
    make_settings: SettingsFactory,
    db: psycopg2.extensions.connection,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="control_api.scheduler.core")
    rig = make_rig(make_settings(), strategy=Herd())
    try:
        for s in ("s1", "s2", "s3", "s4"):
            add_server(db, s, gpus=8, validator=rig.validator_hotkey)
        sizes = {f"c{i}": (1, 2, 4, 8)[i % 4] for i in range(12)}
        for cid, n in sizes.items():
            rig.validator.add(remote_chute(cid, gpu_count=n))
            rig.handle("chute_created", chute_id=cid, version="1", job_only=True)
        publisher = EventPublisher(redis.Redis.from_url(REDIS_URL), redis_prefix)
        rng = random.Random(3)
        jobs = []
        for j in range(60):
            cid = rng.choice(list(sizes))
            jobs.append(f"j{j}")
            publisher.publish(
                "job_created",
                {"job_id": f"j{j}", "chute_id": cid, "validator": rig.validator_hotkey},
            )
        # and purges racing the deploys
        publisher.publish("undeploy_requested", {"deployment_ids": ["none"], "reason": "x"})

        consumer = drain(rig, redis_prefix, 61)
        assert consumer.parked == 0
        placed = rows(db, "SELECT deployment_id, job_id FROM deployments")
        assert len(placed) + len(rig.validator.released_jobs) == 60
        assert placed
        assert claims.violations(db) == []
        held: dict[str, set[str]] = {}
        for dep, gpu in rows(
            db, "SELECT deployment_id, gpu_id FROM gpus WHERE deployment_id IS NOT NULL"
        ):
            held.setdefault(dep, set()).add(gpu)
        seen: Counter[str] = Counter()
        for dep, devices in rig.kube.visible_devices().items():
            ids = set(visible_gpu_ids(devices))
            assert ids == held[dep]  # the pod sees exactly its claimed GPUs
            seen.update(ids)
        assert seen and max(seen.values()) == 1  # no GPU in two pods
        created = [c for c in rig.kube.calls if c.startswith("create_job")]
        assert len(created) == len(placed)  # one Job per deployment
        collisions = [r for r in caplog.records if r.getMessage() == "scheduler.claim_refused"]
        assert collisions  # the herd did collide, and the claims sorted it out
    finally:
        rig.close()


def test_per_chute_order_under_concurrency(
    make_settings: SettingsFactory, db: psycopg2.extensions.connection, redis_prefix: str
) -> None:
    """chute_created then chute_deleted for 20 chutes, interleaved: each chute's delete runs
    after its create (same key), so no chute row or object survives."""
    rig = make_rig(make_settings())
    try:
        add_server(db, "s1", gpus=32, validator=rig.validator_hotkey)
        publisher = EventPublisher(redis.Redis.from_url(REDIS_URL), redis_prefix)
        events: list[tuple[str, dict[str, Any]]] = []
        for i in range(20):
            rig.validator.add(remote_chute(f"o{i}"))
            events.append(("chute_created", {"chute_id": f"o{i}", "version": "1"}))
        for i in range(20):
            events.append(("chute_deleted", {"chute_id": f"o{i}", "version": "1"}))
        for t, d in events:
            publisher.publish(t, {**d, "validator": rig.validator_hotkey})

        assert drain(rig, redis_prefix, 40).parked == 0
        assert rows(db, "SELECT count(*) FROM chutes") == [(0,)]
        assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]
        assert not rig.kube.jobs and not rig.kube.configmaps
        assert len(rig.validator.launches) == 20
    finally:
        rig.close()
