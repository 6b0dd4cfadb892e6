"""The scheduler's snapshot cache (db/gepetto.py StateCache) and the change log it reads
(migration 0005), against the real PostgreSQL: after any mix of writes the cached state is
exactly what a full read of the same snapshot returns, while only changed rows are read."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from control_api.db import claims
from control_api.db import gepetto as q
from control_api.db.migrate import migrate

from .seed import add_chute, add_server


@pytest.fixture(scope="module")
def dsn(fresh_db: Callable[[], str]) -> str:
    dsn = fresh_db()
    migrate(dsn)
    return dsn


def _connect(dsn: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(dsn, options="-c TimeZone=UTC")


@pytest.fixture()
def writer(dsn: str) -> Iterator[psycopg2.extensions.connection]:
    conn = _connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE gpus, deployments, deployment_audit, servers, chutes")
    yield conn
    conn.close()


@pytest.fixture()
def reader(dsn: str) -> Iterator[psycopg2.extensions.connection]:
    conn = _connect(dsn)
    yield conn
    conn.close()


def read_both(
    conn: psycopg2.extensions.connection,
    cache: q.StateCache,
    disk: dict[str, float | None] | None = None,
) -> tuple[q.State, q.State]:
    """The cached state and a full read, from one REPEATABLE READ snapshot."""
    with conn:
        q.snapshot_tx(conn)
        return cache.read(conn, disk), q.read_state(conn, disk)


def changes(conn: psycopg2.extensions.connection, since: int) -> set[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT kind, key FROM inventory_changes WHERE version > %s", (since,))
        return {(r[0], r[1]) for r in cur.fetchall()}


def version(conn: psycopg2.extensions.connection) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM inventory_version")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def test_change_log_names_what_each_write_touched(
    writer: psycopg2.extensions.connection,
) -> None:
    add_chute(writer, "c1")
    gpus = add_server(writer, "s1", gpus=2)
    v = version(writer)
    with writer.cursor() as cur:
        cur.execute("UPDATE servers SET locked = true WHERE server_id = 's1'")
    assert changes(writer, v) == {("s", "s1")}
    with writer.cursor() as cur:
        cur.execute("UPDATE servers SET locked = false")
    v = version(writer)
    with writer:
        made = claims.claim(writer, claims.ClaimRequest("c1", "s1", deployment_id="d1"))
    assert made.gpu_ids == (gpus[0],)
    assert changes(writer, v) == {("s", "s1"), ("d", "d1")}, "one version for the claim"
    assert version(writer) == v + 1
    v = version(writer)
    with writer.cursor() as cur:
        cur.execute("UPDATE chutes SET ban_reason = 'x'")
    assert changes(writer, v) == {("c", "c1")}
    v = version(writer)
    with writer:  # the deployment's delete sets its GPUs' deployment_id to NULL
        with writer.cursor() as cur:
            cur.execute("DELETE FROM deployments")
    assert changes(writer, v) == {("s", "s1"), ("d", "d1")}
    v = version(writer)
    with writer.cursor() as cur:
        cur.execute("TRUNCATE chutes CASCADE")
    assert ("*", "") in changes(writer, v)


def test_cache_equals_full_read_after_random_writes(
    writer: psycopg2.extensions.connection, reader: psycopg2.extensions.connection
) -> None:
    rng = random.Random(13)
    cache = q.StateCache()
    for c in range(6):
        add_chute(writer, f"c{c}", gpu_count=rng.choice((1, 2)), supported=("h100", "h200"))
    servers = [f"s{i}" for i in range(6)]
    for sid in servers:
        add_server(writer, sid, gpus=4, model=rng.choice(("h100", "h200")))
    disk: dict[str, float | None] = {}
    cached, full = read_both(reader, cache, disk)
    assert cached == full and cache.misses == 1

    def claim_one() -> None:
        req = claims.ClaimRequest(f"c{rng.randrange(6)}", rng.choice(servers))
        with writer, contextlib.suppress(claims.ClaimRefused):  # locked, banned, full
            claims.claim(writer, req)

    def release_one() -> None:
        dep = rng.choice(q.deployment_ids(writer) or [""])
        with writer:
            claims.release(writer, dep)

    def sql(statement: str) -> Callable[[], None]:
        def run() -> None:
            with writer.cursor() as cur:
                cur.execute(statement, {"s": rng.choice(servers), "n": rng.random()})

        return run

    def set_disk() -> None:
        disk[rng.choice(servers)] = rng.choice((None, 50.0, 120.0))

    def add_and_drop_server() -> None:
        sid = f"t{rng.randrange(1000)}"
        add_server(writer, sid, gpus=2)
        with writer.cursor() as cur:
            cur.execute("DELETE FROM servers WHERE server_id = %s", (sid,))
            if rng.random() < 0.5:  # keep it for a later read
                add_server(writer, sid, gpus=1, model="a100")

    def chute_churn() -> None:
        cid = f"x{rng.randrange(1000)}"
        with writer:
            add_chute(writer, cid)
            with writer.cursor() as cur:
                cur.execute("UPDATE chutes SET version = '2' WHERE chute_id = %s", (cid,))
                if rng.random() < 0.5:
                    cur.execute("DELETE FROM chutes WHERE chute_id = %s", (cid,))

    ops: list[Callable[[], None]] = [
        claim_one,
        claim_one,
        release_one,
        set_disk,
        add_and_drop_server,
        chute_churn,
        sql("UPDATE servers SET hourly_cost = %(n)s WHERE server_id = %(s)s"),
        sql("UPDATE servers SET status = 'NotReady' WHERE server_id = %(s)s"),
        sql("UPDATE servers SET status = 'Ready', locked = NOT locked WHERE server_id = %(s)s"),
        sql("UPDATE gpus SET verified = false WHERE server_id = %(s)s AND deployment_id IS NULL"),
        sql("UPDATE gpus SET verified = true WHERE server_id = %(s)s"),
        sql("UPDATE deployments SET active = true, verified_at = now() WHERE %(n)s < 0.5"),
        sql("UPDATE deployments SET terminating_at = now() WHERE %(n)s < 0.2"),
        sql("UPDATE chutes SET ban_reason = CASE WHEN %(n)s < 0.5 THEN 'b' END"),
    ]
    for step in range(250):
        for _ in range(rng.choice((0, 1, 1, 2, 5))):  # 0: nothing changed, a hit
            rng.choice(ops)()
        cached, full = read_both(reader, cache, disk)
        assert cached == full, f"step {step}"
    assert cache.misses == 1, "no full read after the first"
    assert cache.updates > 100 and cache.hits > 10
    with writer.cursor() as cur:
        cur.execute("TRUNCATE gpus, deployments, deployment_audit, servers, chutes")
    cached, full = read_both(reader, cache, disk)
    assert cached == full == ([], [], []) and cache.misses == 2


def test_pruned_log_means_a_full_read(
    writer: psycopg2.extensions.connection, reader: psycopg2.extensions.connection
) -> None:
    add_chute(writer, "c1")
    add_server(writer, "s1", gpus=2)
    cache = q.StateCache()
    read_both(reader, cache)
    with writer.cursor() as cur:
        cur.execute("UPDATE servers SET hourly_cost = 3")
        cur.execute("UPDATE servers SET hourly_cost = 4")
        v = version(writer)
        cur.execute("DELETE FROM inventory_changes WHERE version = %s", (v - 1,))
    cached, full = read_both(reader, cache)
    assert cached == full and full[0][0].hourly_cost == 4.0
    assert (cache.misses, cache.updates) == (2, 0)
    with writer.cursor() as cur:
        cur.execute("UPDATE servers SET hourly_cost = 5")
    cached, full = read_both(reader, cache)
    assert cached == full and (cache.misses, cache.updates) == (2, 1)


def test_writer_of_every_thousandth_version_prunes_old_rows(
    writer: psycopg2.extensions.connection,
) -> None:
    add_server(writer, "s1", gpus=1)
    with writer.cursor() as cur:
        cur.execute("DELETE FROM inventory_changes")
        cur.execute("UPDATE inventory_version SET version = 10998")
        cur.execute(
            "INSERT INTO inventory_changes VALUES (999, 's', 'old'), (1000, 's', 'old'),"
            " (1001, 's', 'kept')"
        )
        cur.execute("UPDATE servers SET hourly_cost = 3")  # version 10999: nothing pruned
        cur.execute("SELECT count(*) FROM inventory_changes WHERE version <= 1001")
        assert cur.fetchone() == (3,)
        cur.execute("UPDATE servers SET hourly_cost = 4")  # version 11000
        cur.execute("SELECT version, key FROM inventory_changes WHERE version <= 1001")
        assert cur.fetchall() == [(1001, "kept")]


def test_older_snapshot_reads_everything_and_keeps_the_newer_cache(
    dsn: str, writer: psycopg2.extensions.connection, reader: psycopg2.extensions.connection
) -> None:
    add_server(writer, "s1", gpus=2, hourly_cost=1.0)
    cache = q.StateCache()
    old = _connect(dsn)
    try:
        with old:
            q.snapshot_tx(old)
            q.read_state(old)  # the snapshot is taken here, before the write
            with writer.cursor() as cur:
                cur.execute("UPDATE servers SET hourly_cost = 2")
            new, _ = read_both(reader, cache)
            assert new[0][0].hourly_cost == 2.0
            stale = cache.read(old)
            assert stale == q.read_state(old) and stale[0][0].hourly_cost == 1.0
    finally:
        old.close()
    again, _ = read_both(reader, cache)
    assert again is new, "the newer state stayed cached"
    assert (cache.misses, cache.hits) == (2, 1)


def test_disk_figures_change_only_the_servers_they_name(
    writer: psycopg2.extensions.connection, reader: psycopg2.extensions.connection
) -> None:
    add_server(writer, "s1", gpus=1)
    add_server(writer, "s2", gpus=1)
    cache = q.StateCache()
    first, _ = read_both(reader, cache, {"s1": 100.0})
    second, full = read_both(reader, cache, {"s1": 90.0})
    assert second == full
    assert [s.free_disk_gb for s in second[0]] == [90.0, None]
    assert second[0][1] is first[0][1], "s2 untouched"
    assert cache.hits == 1 and cache.misses == 1


def test_concurrent_writers_and_readers_always_agree(dsn: str, writer: Any) -> None:
    """Claims and releases from two threads, reads from two others sharing one cache: every
    cached read equals the full read of its own snapshot (versions follow commit order)."""
    for c in range(4):
        add_chute(writer, f"c{c}")
    for s in range(8):
        add_server(writer, f"s{s}", gpus=4)
    cache = q.StateCache()
    stop = time.monotonic() + 3.0
    errors: list[str] = []
    reads = [0]

    def write(seed: int) -> None:
        rng = random.Random(seed)
        conn = _connect(dsn)
        try:
            while time.monotonic() < stop:
                with conn:
                    if rng.random() < 0.6:
                        try:
                            claims.claim(
                                conn,
                                claims.ClaimRequest(f"c{rng.randrange(4)}", f"s{rng.randrange(8)}"),
                            )
                        except claims.ClaimRefused:
                            pass
                    else:
                        for dep in q.deployment_ids(conn)[:1]:
                            claims.release(conn, dep)
        finally:
            conn.close()

    def read() -> None:
        conn = _connect(dsn)
        try:
            while time.monotonic() < stop:
                cached, full = read_both(conn, cache)
                if cached != full:
                    errors.append("cached state differs from the full read")
                reads[0] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert reads[0] > 10 and cache.updates > 0
