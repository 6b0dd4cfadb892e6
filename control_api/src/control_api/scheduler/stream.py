"""Reading the durable event stream (`miner_events_stream`, written by the relay and the API)
through a Redis consumer group, at least once, with handlers running concurrently.

- Ordering: each event names keys (`chute:<id>`, `server:<id>`, `job:<id>`, ...); an event
  starts only after every earlier event sharing a key has finished, and events with disjoint
  keys run in parallel, at most `concurrency` at a time (`KeyedExecutor`).
- At least once: an entry is acknowledged (XACK, batched every few milliseconds) only after
  its handler succeeded or it was parked. Entries a previous scheduler read but never
  acknowledged (it crashed, was killed or lost its lease) are taken over at start
  (XAUTOCLAIM): only the holder of `lease:gepetto` reads, so whatever is pending belongs to
  a scheduler that stopped. Handlers are idempotent.
- Retries: a failing handler is retried with exponential backoff (jitter), holding back only
  the events that share its keys; after `max_attempts` it is parked.
- Poison: an entry that does not parse, names an unknown event type, fails `max_attempts`
  times, raises `Permanent`, or was delivered `max_deliveries` times without being
  acknowledged (it kills the process) is copied to `miner_events_parked` with the reason and
  acknowledged, so it never blocks the stream. `python -m control_api scheduler parked`
  lists them, `... requeue ID` puts one back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import ValidationError

from control_api.clients.events import STREAM
from control_api.schemas.gepetto import Event, parse_event

log = logging.getLogger(__name__)
PARKED_STREAM = "miner_events_parked"


class Permanent(Exception):
    """A handler's verdict that retrying cannot help: the event is parked at once."""


@dataclass(frozen=True)
class StreamConfig:
    group: str = "gepetto"
    consumer: str = "gepetto"
    prefix: str = ""  # key prefix (tests)
    batch: int = 64
    block_ms: int = 1000
    concurrency: int = 8
    max_inflight: int = 256
    max_attempts: int = 5
    max_deliveries: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    parked_maxlen: int = 10_000
    ack_delay_s: float = 0.005

    @property
    def stream(self) -> str:
        return self.prefix + STREAM

    @property
    def parked(self) -> str:
        return self.prefix + PARKED_STREAM


class KeyedExecutor:
    """Runs coroutines in submission order per key, in parallel across keys. A task waits for
    the previous task of each of its keys. `slots` bounds how many handlers run at once: a
    task takes a slot for each attempt only, so one that waits out a retry pause holds back
    its own keys but no other event."""

    def __init__(self, concurrency: int) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self._tails: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    def submit(self, keys: Iterable[str], work: Callable[[], Awaitable[None]]) -> None:
        keys = tuple(dict.fromkeys(keys)) or ("_",)
        before = [self._tails[k] for k in keys if k in self._tails]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for k in keys:
            self._tails[k] = done

        async def run() -> None:
            try:
                for f in before:
                    await asyncio.shield(f)
                await work()
            finally:
                done.set_result(None)
                for k in keys:
                    if self._tails.get(k) is done:
                        del self._tails[k]

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


def event_keys(event: Event) -> tuple[str, ...]:
    """The ordering keys of an event (runtime contract §9.1: chute, else server, else the
    deployment, instance or job it is about)."""
    d: Any = event.event_data
    t = event.event_type
    keys: list[str] = []
    if t == "image_updated":
        keys += [f"chute:{c}" for c in d.chute_ids]
    elif getattr(d, "chute_id", None):
        keys.append(f"chute:{d.chute_id}")
    if getattr(d, "server_id", None):
        keys.append(f"server:{d.server_id}")
    if getattr(d, "job_id", None):
        keys.append(f"job:{d.job_id}")
    if getattr(d, "instance_id", None):
        keys.append(f"instance:{d.instance_id}")
    if t == "gpu_verified":
        keys.append(f"gpu:{d.gpu_id}")
    elif t == "undeploy_requested":
        keys += [f"deployment:{i}" for i in d.deployment_ids]
    elif t == "socket_reconnected":
        keys.append("reconcile")
    elif t in ("image_created", "image_deleted"):
        keys.append(f"image:{d.image_id}")
    return tuple(keys)


Handler = Callable[[Event], Awaitable[None]]


class EventConsumer:
    def __init__(
        self,
        client: aioredis.Redis,
        config: StreamConfig,
        handle: Handler,
        executor: KeyedExecutor | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._r = client
        self.cfg = config
        self._handle = handle
        self.executor = executor or KeyedExecutor(config.concurrency)
        self._sleep = sleep
        self.handled = 0
        self.parked = 0
        self._acks: list[Any] = []
        self._ack_wake: asyncio.Event | None = None

    async def ensure_group(self) -> None:
        try:
            await self._r.xgroup_create(self.cfg.stream, self.cfg.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Take over pending entries, then read new ones until `stop` (or cancellation);
        on the way out, wait for the handlers already running."""
        stop = stop or asyncio.Event()
        await self.ensure_group()
        self._ack_wake = asyncio.Event()
        acker = asyncio.ensure_future(self._ack_loop())
        try:
            await self._take_over()
            while not stop.is_set():
                while self.executor.inflight >= self.cfg.max_inflight and not stop.is_set():
                    await asyncio.sleep(0.01)
                resp: Any = await self._r.xreadgroup(
                    self.cfg.group,
                    self.cfg.consumer,
                    {self.cfg.stream: ">"},
                    count=self.cfg.batch,
                    block=self.cfg.block_ms,
                )
                for _, entries in resp or []:
                    for entry_id, fields in entries:
                        self._submit(entry_id, fields, deliveries=1)
            await self.executor.drain()
        except asyncio.CancelledError:
            await self.executor.cancel()
            raise
        finally:
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await asyncio.shield(self._flush_acks())

    async def _ack_loop(self) -> None:
        """Acknowledge in batches: one XACK per few milliseconds, not one per event."""
        assert self._ack_wake is not None
        while True:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            await asyncio.sleep(self.cfg.ack_delay_s)
            try:
                await self._flush_acks()
            except (redis.exceptions.RedisError, OSError):
                log.warning("scheduler.ack_failed", extra={"pending": len(self._acks)})
                await asyncio.sleep(1.0)
                self._ack_wake.set()

    async def _flush_acks(self) -> None:
        if not self._acks:
            return
        ids, self._acks = self._acks, []
        try:
            await self._r.xack(self.cfg.stream, self.cfg.group, *ids)
        except BaseException:
            self._acks = ids + self._acks
            raise

    async def _take_over(self) -> None:
        """XAUTOCLAIM everything pending in the group (ours from a previous life, or a stopped
        scheduler's), in stream order, with its delivery count."""
        start = "0-0"
        while True:
            reply = await self._r.xautoclaim(
                self.cfg.stream, self.cfg.group, self.cfg.consumer, 0, start_id=start, count=500
            )
            start, entries = reply[0], reply[1]
            if entries:
                ids = [e[0] for e in entries]
                counts = await self._deliveries(ids)
                for entry_id, fields in entries:
                    if fields is None:  # trimmed from the stream meanwhile
                        await self._r.xack(self.cfg.stream, self.cfg.group, entry_id)
                        continue
                    self._submit(entry_id, fields, deliveries=counts.get(_s(entry_id), 1))
                log.info("scheduler.took_over", extra={"entries": len(entries)})
            if _s(start) == "0-0":
                return

    async def _deliveries(self, ids: list[Any]) -> dict[str, int]:
        lo, hi = min(ids, key=_order), max(ids, key=_order)
        rows = await self._r.xpending_range(
            self.cfg.stream, self.cfg.group, min=lo, max=hi, count=len(ids) * 2 + 10
        )
        return {_s(r["message_id"]): int(r["times_delivered"]) for r in rows}

    def _submit(self, entry_id: Any, fields: dict[Any, Any], deliveries: int) -> None:
        raw = fields.get(b"event") or fields.get("event")
        try:
            if raw is None:
                raise ValueError("entry has no 'event' field")
            event = parse_event(raw)
        except (ValidationError, ValueError) as exc:
            reason = f"malformed event: {_first_error(exc)}"
            self.executor.submit(("_parse",), lambda: self._park(entry_id, raw, reason, 0))
            return
        keys = event_keys(event)
        if deliveries > self.cfg.max_deliveries:
            reason = f"delivered {deliveries} times without being acknowledged"
            self.executor.submit(keys, lambda: self._park(entry_id, raw, reason, 0))
            return
        self.executor.submit(keys, lambda: self._process(entry_id, raw, event))

    async def _process(self, entry_id: Any, raw: Any, event: Event) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.executor.slots:
                    await self._handle(event)
            except asyncio.CancelledError:
                raise
            except Permanent as exc:
                await self._park(entry_id, raw, f"permanent: {exc}", attempt)
                return
            except Exception as exc:  # noqa: BLE001 - any handler failure: retry, then park
                reason = f"{type(exc).__name__}: {exc}"[:500]
                if attempt >= self.cfg.max_attempts:
                    await self._park(entry_id, raw, f"failed {attempt} times: {reason}", attempt)
                    return
                pause = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2 ** (attempt - 1))
                pause *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not security
                log.warning(
                    "scheduler.event_retry",
                    extra={
                        "event_type": event.event_type,
                        "entry": _s(entry_id),
                        "attempt": attempt,
                        "error": reason,
                        "retry_in_s": round(pause, 2),
                    },
                )
                await self._sleep(pause)
                continue
            self._acks.append(entry_id)
            if self._ack_wake is not None:
                self._ack_wake.set()
            self.handled += 1
            return

    async def _park(self, entry_id: Any, raw: Any, reason: str, attempts: int) -> None:
        log.error(
            "scheduler.event_parked",
            extra={"entry": _s(entry_id), "reason": reason, "attempts": attempts},
        )
        fields = {
            "event": raw if raw is not None else b"",
            "entry_id": _s(entry_id),
            "reason": reason,
            "attempts": str(attempts),
            "parked_at": str(int(time.time())),
        }
        pipe = self._r.pipeline(transaction=True)
        pipe.xadd(self.cfg.parked, fields, maxlen=self.cfg.parked_maxlen, approximate=True)  # type: ignore[arg-type]
        pipe.xack(self.cfg.stream, self.cfg.group, entry_id)
        await pipe.execute()
        self.parked += 1


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _order(entry_id: Any) -> tuple[int, int]:
    ms, _, seq = _s(entry_id).partition("-")
    return int(ms), int(seq or 0)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return f"{where}: {err['msg']}"[:300]
    return str(exc)[:300]


async def list_parked(
    client: aioredis.Redis, prefix: str = "", count: int = 100
) -> list[dict[str, str]]:
    rows: Any = await client.xrevrange(prefix + PARKED_STREAM, count=count)
    return [{"id": _s(i), **{_s(k): _s(v) for k, v in f.items()}} for i, f in rows]


async def requeue(
    client: aioredis.Redis, parked_id: str, prefix: str = "", maxlen: int = 100_000
) -> bool:
    """Put a parked event back on the stream (as a new entry) and drop it from the park."""
    rows: Any = await client.xrange(prefix + PARKED_STREAM, min=parked_id, max=parked_id)
    if not rows:
        return False
    fields = rows[0][1]
    raw = fields.get(b"event") or fields.get("event") or b""
    pipe = client.pipeline(transaction=True)
    pipe.xadd(prefix + STREAM, {"event": raw}, maxlen=maxlen, approximate=True)
    pipe.xdel(prefix + PARKED_STREAM, parked_id)
    await pipe.execute()
    return True
