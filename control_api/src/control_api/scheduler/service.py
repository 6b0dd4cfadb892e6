"""`python -m control_api scheduler`: one active scheduler (Redis lease `lease:gepetto`).

Start: load the strategy (a broken one stops startup here, before anything runs), wait for
the schema, then, while holding the lease: reconcile once, consume the stream, autoscale
every `autoscale_interval_s` and reconcile every `reconcile_interval_s`. Autoscale intents
and reconciles run on the same keyed executor as events (`chute:<id>`, `reconcile`), so they
never overlap an event about the same chute. A strategy file is checked for a new version
every `strategy_reload_interval_s`, lease or not (scheduler/reload.py). SIGTERM: stop reading,
let running handlers finish, release the lease.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg2
import redis.asyncio as aioredis

from control_api.clients.k8s_chutes import ChuteKube
from control_api.clients.miner_validator import HttpMinerValidator, MinerValidator
from control_api.clients.validator import HttpValidatorClient, ValidatorClient
from control_api.core.signing import keypair_from_seed
from control_api.db.pool import Database, DatabaseUnavailable, DbTimeouts
from control_api.relay.lease import Lease
from control_api.scheduler.config import SchedulerSettings
from control_api.scheduler.core import Scheduler
from control_api.scheduler.reconcile import Reconciler
from control_api.scheduler.reload import StrategyReloader
from control_api.scheduler.strategy import StrategyRunner, is_file_spec, load_strategy
from control_api.scheduler.stream import EventConsumer, StreamConfig

log = logging.getLogger(__name__)
LEASE_KEY = "lease:gepetto"
SCHEMA_VERSION = "0005_inventory_changes"


@dataclass
class Parts:
    scheduler: Scheduler
    reconciler: Reconciler
    consumer: EventConsumer
    lease: Lease
    redis: aioredis.Redis


def wait_for_schema(db: Database, stop_after_s: float = 300.0) -> None:
    """The migrate Job runs first; a scheduler never applies DDL itself."""
    import time

    deadline = time.monotonic() + stop_after_s
    while True:
        try:
            with db.connection() as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT 1 FROM control_api_migrations WHERE version = %s", (SCHEMA_VERSION,)
                )
                if cur.fetchone():
                    return
        except (psycopg2.Error, DatabaseUnavailable) as exc:
            log.warning("scheduler.schema_wait", extra={"error": type(exc).__name__})
        if time.monotonic() > deadline:
            raise SystemExit(f"schema {SCHEMA_VERSION} not applied (run the migrate Job)")
        time.sleep(2.0)


def build(
    settings: SchedulerSettings,
    *,
    kube: ChuteKube | None = None,
    validator: MinerValidator | None = None,
    nodes_validator: ValidatorClient | None = None,
    redis_prefix: str = "",
    consumer_name: str | None = None,
    strategy: object | None = None,
) -> Parts:
    if strategy is None:
        strategy = load_strategy(settings.gepetto_strategy, settings.gepetto_strategy_config)
    runner = StrategyRunner(strategy, timeout_s=settings.strategy_hook_timeout_s)
    db = Database(
        settings.postgresql.get_secret_value(),
        settings.db_pool_max,
        DbTimeouts(
            connect_s=settings.db_connect_timeout_s,
            statement_s=settings.db_statement_timeout_s,
            pool_wait_s=settings.db_pool_timeout_s,
        ),
    )
    keypair = keypair_from_seed(settings.miner_seed.get_secret_value())
    if kube is None:
        from control_api.clients.k8s_chutes import RealChuteKube

        kube = RealChuteKube(settings.chutes_namespace)
    scheduler = Scheduler(
        settings,
        db,
        kube,
        validator or HttpMinerValidator(keypair, timeout_s=settings.validator_timeout_s),
        runner,
        nodes_validator=nodes_validator
        or HttpValidatorClient(keypair, timeout_s=settings.validator_timeout_s),
    )
    reconciler = Reconciler(scheduler)
    scheduler.reconcile = reconciler.run
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=max(settings.redis_timeout_s, 5.0),
        socket_connect_timeout=settings.redis_timeout_s,
        socket_keepalive=True,
    )
    cfg = StreamConfig(
        group=settings.scheduler_consumer_group,
        consumer=consumer_name or f"{socket.gethostname()}:{os.getpid()}",
        prefix=redis_prefix,
        concurrency=settings.scheduler_concurrency,
        max_attempts=settings.scheduler_max_attempts,
        backoff_s=settings.scheduler_backoff_s,
        backoff_max_s=settings.scheduler_backoff_max_s,
    )
    consumer = EventConsumer(client, cfg, scheduler.handle)
    lease = Lease(client, redis_prefix + LEASE_KEY, settings.gepetto_lease_ttl_s)
    return Parts(scheduler, reconciler, consumer, lease, client)


def _on_executor(parts: Parts, key: str, fn: Callable[[], object]) -> None:
    async def work() -> None:
        async with parts.consumer.executor.slots:
            try:
                await asyncio.to_thread(fn)
            except Exception:  # noqa: BLE001 - a failed tick is logged; the next one retries
                log.exception("scheduler.task_failed", extra={"key": key})

    parts.consumer.executor.submit((key,), work)


async def _every(period_s: float, tick: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(period_s)
        try:
            await tick()
        except Exception:  # noqa: BLE001 - logged; the loop goes on
            log.exception("scheduler.tick_failed")


async def run_held(parts: Parts, settings: SchedulerSettings, stop: asyncio.Event) -> None:
    """What runs while the lease is held."""
    s = parts.scheduler
    await asyncio.to_thread(parts.reconciler.run)

    async def autoscale() -> None:
        await asyncio.to_thread(s.refresh_remote)
        for chute_id, delta in await asyncio.to_thread(s.autoscale_intents):
            _on_executor(
                parts, f"chute:{chute_id}", functools.partial(s.apply_intent, chute_id, delta)
            )

    async def reconcile() -> None:
        _on_executor(parts, "reconcile", parts.reconciler.run)

    tasks = [
        asyncio.ensure_future(parts.consumer.run(stop)),
        asyncio.ensure_future(_every(settings.autoscale_interval_s, autoscale)),
        asyncio.ensure_future(_every(settings.reconcile_interval_s, reconcile)),
    ]
    try:
        await tasks[0]
    finally:
        for t in tasks[1:]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def watch_strategy(
    settings: SchedulerSettings, runner: StrategyRunner
) -> asyncio.Future[None] | None:
    """Hot reload of a strategy file (scheduler/reload.py), active or standby alike, so a
    standby that takes over runs the current version; None for a module path or with
    STRATEGY_RELOAD_INTERVAL_S=0."""
    spec = settings.gepetto_strategy
    if not spec or not is_file_spec(spec) or settings.strategy_reload_interval_s <= 0:
        return None
    reloader = StrategyReloader(
        spec, settings.gepetto_strategy_config, runner, timeout_s=settings.strategy_hook_timeout_s
    )

    async def poll() -> None:
        await asyncio.to_thread(reloader.poll)

    return asyncio.ensure_future(_every(settings.strategy_reload_interval_s, poll))


async def serve(settings: SchedulerSettings, stop: asyncio.Event, **kwargs: object) -> None:
    parts = build(settings, **kwargs)  # type: ignore[arg-type]
    await asyncio.to_thread(wait_for_schema, parts.scheduler.db)
    log.info("scheduler.started", extra={"strategy": parts.scheduler.strategy.name})
    running, finished = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        running.set()
        finished.clear()
        try:
            await run_held(parts, settings, stop)
        finally:
            running.clear()
            finished.set()

    held = asyncio.ensure_future(parts.lease.run_while_held(work))
    watch = watch_strategy(settings, parts.scheduler.strategy)
    try:
        await stop.wait()
        if running.is_set():  # let the handlers in flight finish (bounded), then let go
            try:
                await asyncio.wait_for(finished.wait(), settings.undeploy_wait_s + 30)
            except TimeoutError:
                log.warning("scheduler.stop_timeout")
        held.cancel()
        await asyncio.gather(held, return_exceptions=True)
    finally:
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        parts.scheduler.strategy.close()
        parts.scheduler.db.close()
        await parts.redis.aclose()
