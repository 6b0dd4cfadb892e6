"""Scheduler benchmarks (issue 13). Run under the heavy-job lock on a quiet machine:

    flock -o /tmp/chutes-heavy.lock python control_api/benchmarks/scheduler.py \\
        --seeds 5 --runs 3 --out control_api/benchmarks/results/scheduler.json

Three parts, one JSON document:

1. `strategies`: the simulator (`python -m control_api.simulate`) on the shipped scenarios
   `steady` and `bursty`, baseline vs `fill`, seeds 1..N; each figure is the median over
   the seeds (each seed is a different generated day).
2. `decision`: one scale-up decision with 500 servers, 4,000 GPUs (half claimed by 1,000
   deployments) and 2,000 chutes in PostgreSQL: ours = the snapshot read the scheduler makes
   (one REPEATABLE READ transaction through its `StateCache`: servers with free GPUs per
   model, chutes, deployments) plus the baseline strategy's `choose_server`, timed after a
   committed write by another connection (the cache re-reads the rows the change log names)
   and with nothing changed (the cache answers); `full_reread` = the same decision the way the
   cache worked before the change log (migration 0005): after any write it re-read every
   server with its GPU counts and every deployment, chutes cached; upstream's = its algorithm
   over the same rows (gepetto.py: one query per decision for the servers with enough free
   GPUs of a supported model, joined and grouped, ordered by cost then free GPUs, then the
   first unlocked one). p50/p99 over `--decisions` decisions for random chutes, all four
   interleaved in the same run, and their ratios. Target: ours p99 < 20 ms.
3. `throughput`: events through the real stream consumer and handlers (8 at a time) when
   the handlers do no Kubernetes work: `gpu_verified` and `instance_verified` for distinct
   GPUs/instances, each an UPDATE in PostgreSQL, acknowledged in Redis. Target >= 500/s.

PostgreSQL and Redis: `CONTROL_API_TEST_PG` (admin DSN; a scratch database is created and
dropped) and `CONTROL_API_TEST_REDIS`, as the tests use (tests/services.sh starts both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from control_api.db import gepetto as q  # noqa: E402
from control_api.db.migrate import migrate  # noqa: E402
from control_api.db.pool import Database  # noqa: E402
from control_api.db.queries import inventory_version  # noqa: E402
from control_api.scheduler.model import ChuteView, PlacementRequest, Snapshot  # noqa: E402
from control_api.scheduler.strategies.baseline import BaselineStrategy  # noqa: E402
from control_api.scheduler.stream import EventConsumer, StreamConfig  # noqa: E402
from control_api.schemas.gepetto import Event  # noqa: E402
from control_api.simulate.__main__ import compare  # noqa: E402

PG_ADMIN = os.environ.get("CONTROL_API_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CONTROL_API_TEST_REDIS", "redis://127.0.0.1:6379/0")
V = "5BenchValidator"
MODELS = ("h100", "h200", "a100")

UPSTREAM_QUERY = """
SELECT s.server_id, s.hourly_cost, s.locked, count(g.gpu_id) AS free_gpus, s.name
FROM servers s JOIN gpus g ON g.server_id = s.server_id
WHERE g.model_short_ref = ANY(%s) AND g.deployment_id IS NULL AND g.verified
  AND s.validator = %s
GROUP BY s.server_id, s.name
HAVING count(g.gpu_id) >= %s
ORDER BY s.hourly_cost ASC, count(g.gpu_id) ASC, s.name
"""  # upstream orders by cost and free GPUs only; the name makes ties break as ours do


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def admin(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def seed_inventory(dsn: str, rng: random.Random) -> list[tuple[str, int, list[str]]]:
    """500 servers x 8 GPUs, 2,000 chutes, 1,000 deployments holding 2,000 GPUs."""
    conn = psycopg2.connect(dsn)
    chutes = []
    with conn, conn.cursor() as cur:
        for i in range(500):
            model = MODELS[i % 3]
            sid = f"srv-{i:04d}"
            cur.execute(
                "INSERT INTO servers (server_id, validator, name, gpu_count, hourly_cost, status,"
                " locked) VALUES (%s, %s, %s, 8, %s, 'Ready', %s)",
                (sid, V, sid, round(rng.uniform(1.0, 3.0), 2), i % 50 == 0),
            )
            cur.executemany(
                "INSERT INTO gpus (gpu_id, validator, server_id, device_info, model_short_ref,"
                " verified) VALUES (%s, %s, %s, '{}', %s, true)",
                [(f"{i:04d}{g:028x}", V, sid, model) for g in range(8)],
            )
        for c in range(2000):
            n = rng.choice((1, 1, 1, 2, 2, 4, 8))
            models = rng.choice([["h100", "h200"], ["h200"], ["a100", "h100"], ["h100"]])
            cid = f"chute-{c:04d}"
            chutes.append((cid, n, models))
            cur.execute(
                "INSERT INTO chutes (chute_id, validator, image, code, filename, ref_str,"
                " version, supported_gpus, gpu_count) VALUES (%s, %s, 'i', 'x', 'f', 'r', '1',"
                " %s, %s)",
                (cid, V, models, n),
            )
        # 1,000 two-GPU deployments on the first 250 servers (half the GPUs claimed)
        two = [c for c in chutes if c[1] == 2][:1]
        cur.execute("UPDATE chutes SET supported_gpus = '{}' WHERE chute_id = %s", (two[0][0],))
        for d in range(1000):
            server = d // 4
            dep = str(uuid.UUID(int=d + 1))
            cur.execute(
                "INSERT INTO deployments (deployment_id, validator, chute_id, server_id, version,"
                " stub) VALUES (%s, %s, %s, %s, '1', false)",
                (dep, V, two[0][0], f"srv-{server:04d}"),
            )
            g0 = (d % 4) * 2
            cur.execute(
                "UPDATE gpus SET deployment_id = %s WHERE gpu_id = ANY(%s)",
                (dep, [f"{server:04d}{g:028x}" for g in (g0, g0 + 1)]),
            )
    conn.close()
    return chutes


def _ours(db: Database, cache: q.StateCache, chute: tuple[str, int, list[str]]) -> str | None:
    cid, n, _ = chute
    with db.connection() as conn:
        q.snapshot_tx(conn)
        servers, chute_rows, deps = cache.read(conn)
    snap = Snapshot.build(time.time(), servers, chute_rows, deps)
    return BaselineStrategy().choose_server(snap, PlacementRequest(cid, n))


def _full_reread(
    db: Database, chutes: list[ChuteView], chute: tuple[str, int, list[str]]
) -> str | None:
    """The decision as made before migration 0005: after any committed change the cache
    re-read all servers (GPU counts per model) and all deployments; the chutes had their own
    cache key (count and newest `updated_at`, unchanged here)."""
    cid, n, _ = chute
    with db.connection() as conn:
        q.snapshot_tx(conn)
        inventory_version(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), max(updated_at) FROM chutes")
            cur.fetchone()
        servers = q._read_servers(conn)
        deps = q._read_deployments(conn)
    snap = Snapshot.build(time.time(), servers, chutes, deps)
    return BaselineStrategy().choose_server(snap, PlacementRequest(cid, n))


def _upstream(db: Database, chute: tuple[str, int, list[str]]) -> str | None:
    _, n, models = chute
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(UPSTREAM_QUERY, (models, V, n))
        rows = cur.fetchall()
    return next((r[0] for r in rows if not r[2]), None)


def _write(dsn_conn: Any, i: int) -> None:
    """A committed change by another connection (as a claim or an event would make)."""
    with dsn_conn, dsn_conn.cursor() as cur:
        cur.execute(
            "UPDATE servers SET hourly_cost = hourly_cost + %s WHERE server_id = 'srv-0499'",
            (0.001 if i % 2 else -0.001,),
        )


def decision_bench(dsn: str, decisions: int, rng: random.Random) -> dict[str, Any]:
    """Ours after a committed write before every decision, ours with nothing changed in
    between, the pre-0005 full re-read after the same write, and upstream's query,
    interleaved so all four see the same machine conditions."""
    chutes = seed_inventory(dsn, rng)
    db = Database(dsn, maxconn=2)
    writer = psycopg2.connect(dsn)
    cache = q.StateCache()
    names = ("ours_after_write", "ours_unchanged", "full_reread", "upstream")
    times: dict[str, list[float]] = {name: [] for name in names}
    agree = 0
    warm = 20  # the first decisions (cold caches) are timed but not counted
    picks = [rng.choice(chutes) for _ in range(decisions + warm)]
    with db.connection() as conn:
        chute_views = q._read_chutes(conn)
    decide: dict[str, Callable[[tuple[str, int, list[str]]], str | None]] = {
        "ours_after_write": lambda c: _ours(db, cache, c),
        "ours_unchanged": lambda c: _ours(db, cache, c),
        "full_reread": lambda c: _full_reread(db, chute_views, c),
        "upstream": lambda c: _upstream(db, c),
    }
    for i, chute in enumerate(picks):
        _write(writer, i)
        got = []
        for name in names:
            start = time.perf_counter()
            got.append(decide[name](chute))
            if i >= warm:
                times[name].append((time.perf_counter() - start) * 1000)
        agree += i >= warm and len(set(got)) == 1
    writer.close()
    db.close()
    out: dict[str, Any] = {
        "servers": 500,
        "gpus": 4000,
        "chutes": 2000,
        "deployments": 1000,
        "decisions": decisions,
        "cache": {"hits": cache.hits, "updates": cache.updates, "misses": cache.misses},
    }
    for name, values in times.items():
        out[f"{name}_ms"] = {
            "p50": round(statistics.median(values), 2),
            "p99": round(pct(values, 0.99), 2),
        }
    for name, base in (
        ("ours_after_write", "upstream"),
        ("ours_unchanged", "upstream"),
        ("ours_after_write", "full_reread"),
    ):
        for p in ("p50", "p99"):
            out[f"ratio_{p}_{name}_over_{base}"] = round(
                out[f"{name}_ms"][p] / out[f"{base}_ms"][p], 2
            )
    out["same_server_chosen"] = f"{agree}/{decisions}"  # by all four
    out["target_p99_ms"] = 20
    return out


def throughput_bench(dsn: str, events: int) -> dict[str, Any]:
    """gpu_verified / instance_verified through the consumer: UPDATE + XACK per event."""
    from control_api.clients.events import EventPublisher

    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    r = redis.Redis.from_url(REDIS_URL)
    publisher = EventPublisher(r, prefix, maxlen=events * 2)
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE gpus SET verified = false")
        cur.execute("UPDATE deployments SET instance_id = 'inst-' || deployment_id")
        cur.execute("SELECT gpu_id FROM gpus ORDER BY gpu_id LIMIT %s", (events // 2,))
        gpus = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT instance_id FROM deployments ORDER BY 1")
        instances = [row[0] for row in cur.fetchall()]
    conn.close()
    for i in range(events):
        if i % 2 == 0:
            publisher.publish("gpu_verified", {"gpu_id": gpus[i // 2 % len(gpus)], "validator": V})
        else:
            inst = instances[i // 2 % len(instances)]
            publisher.publish("instance_verified", {"instance_id": inst, "validator": V})
    db = Database(dsn, maxconn=10)

    def handle_sync(event: Event) -> None:
        data: Any = event.event_data
        with db.connection() as c:
            if event.event_type == "gpu_verified":
                q.gpu_verified(c, data.gpu_id)
            else:
                q.instance_verified(c, data.instance_id)

    async def handle(event: Event) -> None:
        await asyncio.to_thread(handle_sync, event)

    async def run() -> float:
        client = aioredis.Redis.from_url(REDIS_URL)
        consumer = EventConsumer(
            client, StreamConfig(prefix=prefix, block_ms=20, concurrency=8), handle
        )
        stop = asyncio.Event()
        start = time.perf_counter()
        task = asyncio.ensure_future(consumer.run(stop))
        while consumer.handled + consumer.parked < events:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - start
        stop.set()
        await task
        await client.aclose()
        assert consumer.parked == 0
        return elapsed

    elapsed = asyncio.run(run())
    db.close()
    for key in r.scan_iter(prefix + "*"):
        r.delete(key)
    r.close()
    return {
        "events": events,
        "seconds": round(elapsed, 2),
        "events_per_s": round(events / elapsed),
        "target": 500,
    }


def emit(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=1) + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="decision/throughput repetitions")
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--skip-strategies", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out: dict[str, Any] = {
        "machine": f"{platform.system()} {platform.release()} {platform.machine()},"
        f" {os.cpu_count()} CPUs",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d"),
    }
    if not args.skip_strategies:
        seeds = list(range(1, args.seeds + 1))
        strategies = ["baseline", "control_api.scheduler.strategies.fill"]
        out["strategies"] = {s: compare(s, strategies, seeds) for s in ("steady", "bursty")}
        emit(out["strategies"])
    decision_runs, throughput_runs = [], []
    for run in range(args.runs):
        name = f"control_api_bench_{uuid.uuid4().hex[:8]}"
        admin(f'CREATE DATABASE "{name}"')
        dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        try:
            migrate(dsn)
            decision_runs.append(decision_bench(dsn, args.decisions, random.Random(run)))
            throughput_runs.append(throughput_bench(dsn, args.events))
        finally:
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        emit({"decision": decision_runs[-1], "throughput": throughput_runs[-1]})
    out["decision_runs"] = decision_runs
    out["throughput_runs"] = throughput_runs
    for name in ("ours_after_write", "ours_unchanged", "full_reread", "upstream"):
        for p in ("p50", "p99"):
            out[f"decision_{name}_{p}_ms_median"] = statistics.median(
                d[f"{name}_ms"][p] for d in decision_runs
            )
    for key in decision_runs[0]:
        if key.startswith("ratio_"):
            out[f"decision_{key}_median"] = statistics.median(d[key] for d in decision_runs)
    out["throughput_median_events_per_s"] = statistics.median(
        t["events_per_s"] for t in throughput_runs
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    emit({k: v for k, v in out.items() if k != "strategies"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
