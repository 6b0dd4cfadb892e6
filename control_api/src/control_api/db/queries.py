"""All SQL. Inventory JSON is assembled in Python from flat, ordered queries (one each for
servers, GPUs and deployments with their chute), never an object graph or a cartesian product,
and serialized by orjson; jsonb columns travel as their own text (`orjson.Fragment`)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg2.errors
from psycopg2.extensions import connection
from psycopg2.extras import Json

_GPU_KEYS = (
    "gpu_id", "validator", "server_id", "deployment_id", "device_info", "model_short_ref",
    "verified",
)  # fmt: skip
_DEPLOYMENT_KEYS = (
    "deployment_id", "instance_id", "validator", "host", "port", "chute_id", "server_id",
    "version", "active", "stub", "verified_at", "job_id", "config_id", "created_at",
    "activated_at", "terminating_at",
)  # fmt: skip
_CHUTE_KEYS = (
    "chute_id", "name", "version", "image", "chutes_version", "gpu_count", "supported_gpus",
    "ban_reason",
)  # fmt: skip
_SERVER_KEYS = (
    "server_id", "validator", "name", "ip_address", "verification_port", "status",
    "created_at", "labels", "seed", "gpu_count", "cpu_per_gpu", "memory_per_gpu",
    "hourly_cost", "locked",
)  # fmt: skip
_JSONB = frozenset({"device_info", "labels"})  # fetched as text, embedded verbatim


def _cols(alias: str, keys: tuple[str, ...]) -> str:
    return ", ".join(f"{alias}.{k}::text" if k in _JSONB else f"{alias}.{k}" for k in keys)


# Built per query (microseconds against a database round trip) rather than once at import, so
# mutation testing can switch them like any other code (tests/mutation/run.py).
def _gpu_sql(where: str) -> str:
    return f'SELECT {_cols("g", _GPU_KEYS)} FROM gpus g WHERE {where} ORDER BY g.gpu_id COLLATE "C"'


def _deployment_sql(where: str) -> str:
    return (
        f"SELECT {_cols('d', _DEPLOYMENT_KEYS)}, {_cols('c', _CHUTE_KEYS)}"
        " FROM deployments d LEFT JOIN chutes c ON c.chute_id = d.chute_id"
        f' WHERE {where} ORDER BY d.created_at, d.deployment_id COLLATE "C"'
    )


def _server_sql(where: str) -> str:
    return (
        f"SELECT {_cols('s', _SERVER_KEYS)} FROM servers s WHERE {where}"
        ' ORDER BY s.name COLLATE "C"'
    )


_N_DEPLOYMENT = len(_DEPLOYMENT_KEYS)

Obj = dict[str, Any]


def _rows(conn: connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _gpus(conn: connection, where: str, params: tuple[Any, ...]) -> list[Obj]:
    out = []
    for row in _rows(conn, _gpu_sql(where), params):
        gpu = dict(zip(_GPU_KEYS, row, strict=True))
        gpu["device_info"] = orjson.Fragment(gpu["device_info"])
        out.append(gpu)
    return out


def _deployments(
    conn: connection, where: str, params: tuple[Any, ...], gpus: list[Obj]
) -> list[Obj]:
    by_deployment: defaultdict[str, list[Obj]] = defaultdict(list)
    for gpu in gpus:
        if gpu["deployment_id"] is not None:
            by_deployment[gpu["deployment_id"]].append(gpu)
    out = []
    for row in _rows(conn, _deployment_sql(where), params):
        dep = dict(zip(_DEPLOYMENT_KEYS, row[:_N_DEPLOYMENT], strict=True))
        dep["gpus"] = by_deployment.get(dep["deployment_id"], [])
        chute = row[_N_DEPLOYMENT:]
        dep["chute"] = None if chute[0] is None else dict(zip(_CHUTE_KEYS, chute, strict=True))
        out.append(dep)
    return out


def _servers(conn: connection, server_id: str | None) -> list[Obj]:
    """Servers with their GPUs and deployments: three flat queries, one pass."""
    if server_id is None:
        s_where = g_where = d_where = "TRUE"
        s_params: tuple[Any, ...] = ()
        g_params: tuple[Any, ...] = ()
    else:
        s_where, d_where = "s.server_id = %s", "d.server_id = %s"
        g_where = (
            "g.server_id = %s OR g.deployment_id IN"
            " (SELECT deployment_id FROM deployments WHERE server_id = %s)"
        )
        s_params, g_params = (server_id,), (server_id, server_id)
    servers = _rows(conn, _server_sql(s_where), s_params)
    if not servers:
        return []
    gpus = _gpus(conn, g_where, g_params)
    deployments = _deployments(conn, d_where, s_params, gpus)
    gpus_by_server: defaultdict[str, list[Obj]] = defaultdict(list)
    for gpu in gpus:
        gpus_by_server[gpu["server_id"]].append(gpu)
    deps_by_server: defaultdict[str, list[Obj]] = defaultdict(list)
    for dep in deployments:
        deps_by_server[dep["server_id"]].append(dep)
    out = []
    for row in servers:
        server = dict(zip(_SERVER_KEYS, row, strict=True))
        server["labels"] = orjson.Fragment(server["labels"])
        server["is_tee"] = False
        server["gpus"] = gpus_by_server.get(server["server_id"], [])
        server["deployments"] = deps_by_server.get(server["server_id"], [])
        out.append(server)
    return out


def _dumps(value: object) -> bytes:
    return orjson.dumps(value)


_PURGE_ITEM_JSON = """json_build_object(
    'deployment_id', d.deployment_id, 'chute_id', d.chute_id, 'chute_name', c.name,
    'server_id', d.server_id, 'server_name', s.name,
    'gpu_count', (SELECT count(*) FROM gpus g WHERE g.deployment_id = d.deployment_id))"""


class Conflict(Exception):
    """A unique constraint said no (another add-node won)."""


@dataclass(frozen=True)
class ServerRef:
    server_id: str
    name: str


def list_servers_json(conn: connection) -> bytes:
    return _dumps(_servers(conn, None))


InventoryVersion = tuple[str, int]  # (epoch, counter) from migration 0003


def inventory_version(conn: connection) -> InventoryVersion:
    """The committed inventory version: one row, bumped by every change (migration 0003)."""
    with conn.cursor() as cur:
        cur.execute("SELECT epoch::text, version FROM inventory_version")
        row = cur.fetchone()
    if row is None:
        raise RuntimeError("inventory_version has no row: migration 0003 not applied")
    return row[0], row[1]


def list_servers_json_versioned(conn: connection) -> tuple[InventoryVersion, bytes]:
    """GET /servers/ bytes and the version they belong to, read from one snapshot.

    Must start the connection's transaction: it switches it to REPEATABLE READ, READ ONLY."""
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    version = inventory_version(conn)
    return version, list_servers_json(conn)


def find_server(conn: connection, id_or_name: str) -> ServerRef | None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT server_id, name FROM servers WHERE name = %s OR server_id = %s"
            " ORDER BY (name = %s) DESC LIMIT 1",
            (id_or_name, id_or_name, id_or_name),
        )
        row = cur.fetchone()
    return ServerRef(row[0], row[1]) if row else None


def server_json(conn: connection, server_id: str) -> bytes | None:
    servers = _servers(conn, server_id)
    return _dumps(servers[0]) if servers else None


def set_locked(conn: connection, server_id: str, locked: bool) -> bytes | None:
    with conn.cursor() as cur:
        cur.execute("UPDATE servers SET locked = %s WHERE server_id = %s", (locked, server_id))
    return server_json(conn, server_id)


_DEPLOYMENT_GPUS = "g.deployment_id IN (SELECT d.deployment_id FROM deployments d WHERE {where})"


def _deployments_where(conn: connection, where: str, params: tuple[Any, ...]) -> list[Obj]:
    gpus = _gpus(conn, _DEPLOYMENT_GPUS.format(where=where), params)
    return _deployments(conn, where, params, gpus)


def job_deployments_json(conn: connection, server_id: str) -> bytes:
    return _dumps(
        _deployments_where(conn, "d.server_id = %s AND d.job_id IS NOT NULL", (server_id,))
    )


def deployment_json(conn: connection, deployment_id: str) -> bytes | None:
    deps = _deployments_where(conn, "d.deployment_id = %s", (deployment_id,))
    return _dumps(deps[0]) if deps else None


def purge_items_json(
    conn: connection, *, server_id: str | None, include_jobs: bool
) -> tuple[list[str], str]:
    """Deployment ids and PurgeItem JSON for a purge; jobs only when asked."""
    where = ["TRUE"]
    params: list[Any] = []
    if server_id is not None:
        where.append("d.server_id = %s")
        params.append(server_id)
    if not include_jobs:
        where.append("d.job_id IS NULL")
    sql = (
        f"SELECT d.deployment_id, {_PURGE_ITEM_JSON} FROM deployments d"
        " JOIN servers s ON s.server_id = d.server_id"
        " LEFT JOIN chutes c ON c.chute_id = d.chute_id"
        f" WHERE {' AND '.join(where)} ORDER BY d.created_at"
    )
    with conn.cursor() as cur:
        cur.execute(sql, tuple(params))
        rows = cur.fetchall()
    return [r[0] for r in rows], json.dumps([r[1] for r in rows])


def server_exists(conn: connection, name: str, server_id: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM servers WHERE name = %s OR server_id = %s", (name, server_id))
        return cur.fetchone() is not None


@dataclass(frozen=True)
class NewServer:
    server_id: str
    validator: str
    name: str
    ip_address: str | None
    gpu_count: int
    cpu_per_gpu: int
    memory_per_gpu: int
    hourly_cost: float
    labels: dict[str, str]


def insert_server(conn: connection, s: NewServer) -> None:
    """The add-node lock: a unique violation on name or server_id means another attempt won."""
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO servers (server_id, validator, name, ip_address, gpu_count,"
                " cpu_per_gpu, memory_per_gpu, hourly_cost, labels)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    s.server_id,
                    s.validator,
                    s.name,
                    s.ip_address,
                    s.gpu_count,
                    s.cpu_per_gpu,
                    s.memory_per_gpu,
                    s.hourly_cost,
                    Json(s.labels),
                ),
            )
    except psycopg2.errors.UniqueViolation as exc:
        raise Conflict(s.name) from exc


def set_verification_port(conn: connection, server_id: str, port: int) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE servers SET verification_port = %s WHERE server_id = %s", (port, server_id)
        )


def insert_gpus(
    conn: connection,
    server_id: str,
    validator: str,
    short_ref: str,
    devices: list[dict[str, Any]],
) -> None:
    with conn.cursor() as cur:
        for device in devices:
            cur.execute(
                "INSERT INTO gpus (gpu_id, validator, server_id, device_info, model_short_ref)"
                " VALUES (%s, %s, %s, %s, %s)",
                (device["uuid"], validator, server_id, Json(device), short_ref),
            )


def set_seed(conn: connection, server_id: str, seed: int) -> None:
    with conn.cursor() as cur:
        cur.execute("UPDATE servers SET seed = %s WHERE server_id = %s", (seed, server_id))


def mark_ready(conn: connection, server_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute("UPDATE gpus SET verified = true WHERE server_id = %s", (server_id,))
        cur.execute("UPDATE servers SET status = 'Ready' WHERE server_id = %s", (server_id,))


def delete_server(conn: connection, server_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM servers WHERE server_id = %s", (server_id,))
