"""db/queries.py on a real PostgreSQL, function by function: the inventory JSON the CLI reads
(every field, nesting and order), the filters of the one-server and per-deployment views, and
the add-node writes, each checked to touch only its own server."""

from __future__ import annotations

import json
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from control_api.db import queries as q
from psycopg2.extensions import connection

from tests.seed import VALIDATOR, add_chute, add_server

Conn = psycopg2.extensions.connection


def _load(raw: bytes | str | None) -> Any:
    assert raw is not None
    return json.loads(raw)


def _deploy(
    conn: connection,
    deployment_id: str,
    chute_id: str,
    server_id: str,
    gpu_ids: list[str],
    *,
    job_id: str | None = None,
    created: str = "2026-01-01 00:00:00+00",
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO deployments (deployment_id, validator, chute_id, server_id, version,"
            " job_id, created_at, host, port) VALUES (%s, %s, %s, %s, '1', %s, %s, 'h', 80)",
            (deployment_id, VALIDATOR, chute_id, server_id, job_id, created),
        )
        for g in gpu_ids:
            cur.execute("UPDATE gpus SET deployment_id = %s WHERE gpu_id = %s", (deployment_id, g))


def _new_server(server_id: str, name: str, **kw: Any) -> q.NewServer:
    base: dict[str, Any] = {
        "server_id": server_id,
        "validator": VALIDATOR,
        "name": name,
        "ip_address": "203.0.113.7",
        "gpu_count": 2,
        "cpu_per_gpu": 4,
        "memory_per_gpu": 32,
        "hourly_cost": 1.5,
        "labels": {"gpu-short-ref": "h200", "chutes/worker": "true"},
    }
    return q.NewServer(**(base | kw))


def test_inventory_json_every_field_nested_and_ordered(db: Conn) -> None:
    add_chute(db, "c1", gpu_count=2)
    b = add_server(db, "srv-b", gpus=2, name="b-node")
    a = add_server(db, "srv-a", gpus=3, name="a-node", locked=True)
    add_server(db, "srv-empty", gpus=0, name="c-node")
    _deploy(db, "dep-2", "c1", "srv-a", a[:2], created="2026-01-02 00:00:00+00")
    _deploy(db, "dep-1", "c1", "srv-a", [], job_id="job-1")
    with db.cursor() as cur:
        cur.execute("UPDATE gpus SET device_info = %s WHERE gpu_id = %s", ('{"uuid": "x"}', a[0]))
    servers = _load(q.list_servers_json(db))
    assert [s["name"] for s in servers] == ["a-node", "b-node", "c-node"]
    first = servers[0]
    assert set(first) == set(q._SERVER_KEYS) | {"is_tee", "gpus", "deployments"}
    assert first["server_id"] == "srv-a" and first["locked"] is True and first["is_tee"] is False
    # jsonb columns arrive as JSON objects, not as strings holding JSON
    assert first["labels"] == {"gpu-short-ref": "h200"}
    assert [g["gpu_id"] for g in first["gpus"]] == sorted(a)
    assert first["gpus"][[g["gpu_id"] for g in first["gpus"]].index(a[0])]["device_info"] == {
        "uuid": "x"
    }
    assert set(first["gpus"][0]) == set(q._GPU_KEYS)
    # deployments by creation time, each with its own GPUs and its chute
    assert [d["deployment_id"] for d in first["deployments"]] == ["dep-1", "dep-2"]
    job, dep = first["deployments"]
    assert job["gpus"] == [] and job["job_id"] == "job-1"
    assert sorted(g["gpu_id"] for g in dep["gpus"]) == sorted(a[:2])
    assert dep["chute"] == {
        "chute_id": "c1",
        "name": "name-c1",
        "version": "1",
        "image": "user/img:1",
        "chutes_version": "0.3.5",
        "gpu_count": 2,
        "supported_gpus": ["h200"],
        "ban_reason": None,
    }
    assert set(dep) == set(q._DEPLOYMENT_KEYS) | {"gpus", "chute"}
    assert [g["gpu_id"] for g in servers[1]["gpus"]] == sorted(b)
    assert servers[1]["deployments"] == [] and servers[2]["gpus"] == []


def test_a_chute_without_a_name_is_still_a_chute(db: Conn) -> None:
    add_chute(db, "c1")
    with db.cursor() as cur:
        cur.execute("UPDATE chutes SET name = NULL")
    gpus = add_server(db, "s1", gpus=1)
    _deploy(db, "d1", "c1", "s1", gpus)
    dep = _load(q.deployment_json(db, "d1"))
    assert dep["chute"]["chute_id"] == "c1" and dep["chute"]["name"] is None


def test_one_server_view_holds_only_its_own_rows(db: Conn) -> None:
    add_chute(db, "c1")
    mine = add_server(db, "s1", gpus=2)
    other = add_server(db, "s2", gpus=2)
    _deploy(db, "d-mine", "c1", "s1", mine[:1])
    _deploy(db, "d-other", "c1", "s2", other[:1])
    one = _load(q.server_json(db, "s1"))
    assert one["server_id"] == "s1"
    assert sorted(g["gpu_id"] for g in one["gpus"]) == sorted(mine)
    assert [d["deployment_id"] for d in one["deployments"]] == ["d-mine"]
    assert [g["gpu_id"] for g in one["deployments"][0]["gpus"]] == mine[:1]
    assert q.server_json(db, "nope") is None
    assert _load(q.list_servers_json(db))[1]["deployments"][0]["deployment_id"] == "d-other"


def test_set_locked_changes_one_server_and_returns_it(db: Conn) -> None:
    add_server(db, "s1", gpus=1)
    add_server(db, "s2", gpus=1)
    assert _load(q.set_locked(db, "s1", True))["locked"] is True
    assert [s["locked"] for s in _load(q.list_servers_json(db))] == [True, False]
    assert _load(q.set_locked(db, "s1", False))["locked"] is False
    assert q.set_locked(db, "nope", True) is None


def test_find_server_prefers_the_name(db: Conn) -> None:
    add_server(db, "alpha", gpus=0, name="zeta")
    add_server(db, "beta", gpus=0, name="alpha")
    assert q.find_server(db, "alpha") == q.ServerRef("beta", "alpha")
    assert q.find_server(db, "zeta") == q.ServerRef("alpha", "zeta")
    assert q.find_server(db, "gamma") is None


def test_job_and_single_deployment_views(db: Conn) -> None:
    add_chute(db, "c1")
    s1 = add_server(db, "s1", gpus=3)
    s2 = add_server(db, "s2", gpus=1)
    _deploy(db, "plain", "c1", "s1", s1[:1])
    _deploy(db, "job-here", "c1", "s1", s1[1:2], job_id="j1")
    _deploy(db, "job-there", "c1", "s2", s2, job_id="j2")
    jobs = _load(q.job_deployments_json(db, "s1"))
    assert [d["deployment_id"] for d in jobs] == ["job-here"]
    assert [g["gpu_id"] for g in jobs[0]["gpus"]] == s1[1:2]
    one = _load(q.deployment_json(db, "plain"))
    assert one["deployment_id"] == "plain" and [g["gpu_id"] for g in one["gpus"]] == s1[:1]
    assert q.deployment_json(db, "nope") is None


def test_purge_items_filter_by_server_and_jobs(db: Conn) -> None:
    add_chute(db, "c1", gpu_count=2)
    s1 = add_server(db, "s1", gpus=2, name="one")
    s2 = add_server(db, "s2", gpus=2, name="two")
    _deploy(db, "a", "c1", "s1", s1, created="2026-01-01 00:00:00+00")
    _deploy(db, "b", "c1", "s2", s2[:1], created="2026-01-02 00:00:00+00")
    _deploy(db, "j", "c1", "s2", [], job_id="job", created="2026-01-03 00:00:00+00")
    ids, items = q.purge_items_json(db, server_id=None, include_jobs=False)
    assert ids == ["a", "b"]
    assert json.loads(items) == [
        {
            "deployment_id": "a",
            "chute_id": "c1",
            "chute_name": "name-c1",
            "server_id": "s1",
            "server_name": "one",
            "gpu_count": 2,
        },
        {
            "deployment_id": "b",
            "chute_id": "c1",
            "chute_name": "name-c1",
            "server_id": "s2",
            "server_name": "two",
            "gpu_count": 1,
        },
    ]
    assert q.purge_items_json(db, server_id="s2", include_jobs=True)[0] == ["b", "j"]
    assert q.purge_items_json(db, server_id="s2", include_jobs=False)[0] == ["b"]
    assert q.purge_items_json(db, server_id=None, include_jobs=True)[0] == ["a", "b", "j"]


def test_inventory_version_moves_with_every_write(db: Conn) -> None:
    epoch, before = q.inventory_version(db)
    assert isinstance(epoch, str) and epoch and isinstance(before, int)
    add_server(db, "s1", gpus=1)
    after = q.inventory_version(db)
    assert after[0] == epoch and after[1] > before


def test_inventory_version_without_its_row_names_the_migration(database_dsn: str) -> None:
    conn = psycopg2.connect(database_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM inventory_version")
        with pytest.raises(RuntimeError) as missing:
            q.inventory_version(conn)
        assert str(missing.value) == "inventory_version has no row: migration 0003 not applied"
    finally:
        conn.rollback()
        conn.close()


def test_versioned_read_is_one_read_only_snapshot(database_dsn: str, db: Conn) -> None:
    add_server(db, "s1", gpus=1)
    conn = psycopg2.connect(database_dsn)
    try:
        version, body = q.list_servers_json_versioned(conn)
        assert version == q.inventory_version(db)
        assert [s["server_id"] for s in _load(body)] == ["s1"]
        add_server(db, "s2", gpus=1)  # committed elsewhere, after the snapshot began
        assert [s["server_id"] for s in _load(q.list_servers_json(conn))] == ["s1"]
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            q.set_seed(conn, "s1", 1)
    finally:
        conn.close()


def test_add_node_writes_round_trip(db: Conn) -> None:
    q.insert_server(db, _new_server("s1", "node-1"))
    q.insert_server(db, _new_server("s2", "node-2", ip_address=None))
    assert q.server_exists(db, "node-1", "zzz") and q.server_exists(db, "zzz", "s1")
    assert not q.server_exists(db, "zzz", "yyy")
    devices: list[dict[str, Any]] = [
        {"uuid": "GPU-1", "name": "NVIDIA H200", "memory": 1},
        {"uuid": "GPU-2"},
    ]
    q.insert_gpus(db, "s1", VALIDATOR, "h200", devices)
    q.set_verification_port(db, "s1", 32001)
    q.set_seed(db, "s1", 42)
    one = _load(q.server_json(db, "s1"))
    assert {k: one[k] for k in ("validator", "name", "ip_address", "gpu_count")} == {
        "validator": VALIDATOR,
        "name": "node-1",
        "ip_address": "203.0.113.7",
        "gpu_count": 2,
    }
    assert (one["cpu_per_gpu"], one["memory_per_gpu"], one["hourly_cost"]) == (4, 32, 1.5)
    assert one["labels"] == {"gpu-short-ref": "h200", "chutes/worker": "true"}
    assert (one["verification_port"], one["seed"], one["status"]) == (32001, 42, "Bootstrapping")
    assert [
        (g["gpu_id"], g["validator"], g["server_id"], g["model_short_ref"], g["verified"])
        for g in one["gpus"]
    ] == [
        ("GPU-1", VALIDATOR, "s1", "h200", False),
        ("GPU-2", VALIDATOR, "s1", "h200", False),
    ]
    assert one["gpus"][0]["device_info"] == devices[0]
    two = _load(q.server_json(db, "s2"))
    assert (two["ip_address"], two["verification_port"], two["seed"]) == (None, None, None)


def test_insert_server_conflicts_on_name_or_id(db: Conn) -> None:
    q.insert_server(db, _new_server("s1", "node-1"))
    for clash in (_new_server("s1", "other"), _new_server("s9", "node-1")):
        with pytest.raises(q.Conflict) as refused:
            q.insert_server(db, clash)
        assert refused.value.args == (clash.name,)
    assert [s["server_id"] for s in _load(q.list_servers_json(db))] == ["s1"]


def test_mark_ready_and_delete_touch_one_server_of_two(db: Conn) -> None:
    for sid in ("s1", "s2"):
        q.insert_server(db, _new_server(sid, f"node-{sid}"))
        q.insert_gpus(db, sid, VALIDATOR, "h200", [{"uuid": f"{sid}-g0"}, {"uuid": f"{sid}-g1"}])
    q.mark_ready(db, "s1")
    s1, s2 = _load(q.list_servers_json(db))
    assert s1["status"] == "Ready" and [g["verified"] for g in s1["gpus"]] == [True, True]
    assert s2["status"] == "Bootstrapping" and [g["verified"] for g in s2["gpus"]] == [False] * 2
    q.delete_server(db, "s1")
    assert [s["server_id"] for s in _load(q.list_servers_json(db))] == ["s2"]
    with db.cursor() as cur:
        cur.execute("SELECT server_id, count(*) FROM gpus GROUP BY server_id")
        assert cur.fetchall() == [("s2", 2)]
