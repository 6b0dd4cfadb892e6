"""GET /servers/ served from rendered bytes keyed by the inventory version (migration 0003):
every committed change by any connection bumps it once per transaction, at commit, without
serializing writers; the API answers what a fresh render would."""

from __future__ import annotations

import threading

import psycopg2
import psycopg2.extensions
import pytest
from control_api.db import queries
from control_api.db.pool import Database
from control_api.routers.servers import InventoryCache

from tests.conftest import Api
from tests.test_routes import seed_inventory


def _version(db: psycopg2.extensions.connection) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT version FROM inventory_version")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def _fresh_render(dsn: str) -> bytes:
    conn = psycopg2.connect(dsn, options="-c TimeZone=UTC")
    try:
        with conn:
            return queries.list_servers_json(conn)
    finally:
        conn.close()


def test_every_table_and_statement_bumps(db: psycopg2.extensions.connection) -> None:
    seed_inventory(db, "v", servers=1, gpus=2, deployments=1, jobs=0)
    statements = [
        "UPDATE servers SET locked = NOT locked",
        "UPDATE gpus SET verified = NOT verified",
        "UPDATE deployments SET active = NOT active",
        "UPDATE chutes SET name = name || 'x'",
        "DELETE FROM gpus WHERE gpu_id = (SELECT min(gpu_id) FROM gpus)",
        "TRUNCATE deployment_audit, gpus, deployments, servers, chutes",
    ]
    for sql in statements:
        before = _version(db)
        with db.cursor() as cur:
            cur.execute(sql)
        assert _version(db) == before + 1, sql
    before = _version(db)
    with db.cursor() as cur:
        cur.execute("UPDATE servers SET locked = true")  # no row: nothing changed
        cur.execute("DELETE FROM deployment_audit")  # not part of the inventory
    assert _version(db) == before


def test_once_per_transaction_and_not_on_rollback(
    database_dsn: str, db: psycopg2.extensions.connection
) -> None:
    before = _version(db)
    conn = psycopg2.connect(database_dsn)
    try:
        with conn, conn.cursor() as cur:  # one transaction, many rows and tables
            cur.execute(
                "INSERT INTO chutes (chute_id, validator, image, code, filename, ref_str,"
                " version, gpu_count) VALUES ('c9', 'v', 'i', 'x', 'f', 'r', '1', 1)"
            )
            for i in range(5):
                cur.execute(
                    "INSERT INTO servers (server_id, validator, name, gpu_count, hourly_cost)"
                    " VALUES (%s, 'v', %s, 1, 1)",
                    (f"s{i}", f"n{i}"),
                )
            assert _version(db) == before  # not visible (nor taken) before commit
        assert _version(db) == before + 1
        with pytest.raises(RuntimeError), conn, conn.cursor() as cur:
            cur.execute("UPDATE servers SET locked = true")
            raise RuntimeError("roll back")
        assert _version(db) == before + 1
    finally:
        conn.close()


def test_writers_of_different_tables_do_not_wait_for_each_other(database_dsn: str) -> None:
    """The bump runs at commit: an open transaction that changed gpus does not hold the
    counter, so another one may change servers and commit meanwhile."""
    a = psycopg2.connect(database_dsn)
    b = psycopg2.connect(database_dsn)
    try:
        with a.cursor() as cur:
            cur.execute(
                "INSERT INTO servers (server_id, validator, name, gpu_count, hourly_cost)"
                " VALUES ('sa', 'v', 'na', 1, 1)"
            )
        done = threading.Event()

        def other() -> None:
            with b, b.cursor() as cur:
                cur.execute("SET LOCAL lock_timeout = '5s'")
                cur.execute(
                    "INSERT INTO servers (server_id, validator, name, gpu_count, hourly_cost)"
                    " VALUES ('sb', 'v', 'nb', 1, 1)"
                )
            done.set()

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert done.is_set()
        a.commit()
    finally:
        a.close()
        b.close()


def test_cache_hits_and_invalidation_by_another_writer(
    database_dsn: str, db: psycopg2.extensions.connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    renders: list[int] = []
    real = queries.list_servers_json_versioned

    def counting(conn: psycopg2.extensions.connection) -> tuple[queries.InventoryVersion, bytes]:
        renders.append(1)
        return real(conn)

    monkeypatch.setattr(queries, "list_servers_json_versioned", counting)
    seed_inventory(db, "v", servers=2)
    pool = Database(database_dsn, 4)
    cache = InventoryCache()
    try:
        first = cache.get(pool)
        assert first == _fresh_render(database_dsn) and len(renders) == 1
        assert cache.get(pool) is first and len(renders) == 1  # hit: same bytes, no render
        with db.cursor() as cur:  # another connection (as gepetto would) changes a deployment
            cur.execute("UPDATE deployments SET active = true WHERE job_id IS NULL")
        second = cache.get(pool)
        assert second != first and second == _fresh_render(database_dsn) and len(renders) == 2
        with db.cursor() as cur:
            cur.execute("DELETE FROM gpus; DELETE FROM deployments; DELETE FROM servers")
        assert cache.get(pool) == b"[]" and len(renders) == 3
    finally:
        pool.close()


def test_concurrent_misses_render_once(
    database_dsn: str, db: psycopg2.extensions.connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_inventory(db, "v", servers=3)
    renders: list[int] = []
    real = queries.list_servers_json_versioned

    def slow(conn: psycopg2.extensions.connection) -> tuple[queries.InventoryVersion, bytes]:
        renders.append(1)
        threading.Event().wait(0.2)
        return real(conn)

    monkeypatch.setattr(queries, "list_servers_json_versioned", slow)
    pool = Database(database_dsn, 8)
    cache = InventoryCache()
    bodies: list[bytes] = []
    try:
        threads = [
            threading.Thread(target=lambda: bodies.append(cache.get(pool))) for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert len(bodies) == 6 and len(set(bodies)) == 1 and len(renders) == 1
    finally:
        pool.close()


def test_api_answers_fresh_inventory_after_writes(
    api: Api, database_dsn: str, db: psycopg2.extensions.connection
) -> None:
    assert api.get("/servers/").json() == []
    seed_inventory(db, api.validator.hotkey, servers=2)
    listed = api.get("/servers/")
    assert listed.status_code == 200 and listed.content == _fresh_render(database_dsn)
    assert api.get("/servers/node-0/lock").json()["locked"] is True  # a write through the API
    servers = {s["name"]: s for s in api.get("/servers/").json()}
    assert servers["node-0"]["locked"] is True and servers["node-1"]["locked"] is False
    with db.cursor() as cur:
        cur.execute("UPDATE servers SET hourly_cost = 9.5 WHERE name = 'node-1'")
    servers = {s["name"]: s for s in api.get("/servers/").json()}
    assert servers["node-1"]["hourly_cost"] == 9.5
