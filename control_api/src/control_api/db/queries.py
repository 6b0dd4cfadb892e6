"""All SQL. Inventory shapes are built by PostgreSQL as JSON (explicit fields, no object graph):
one round trip, no per-row Python objects, so a 500-server inventory stays small and fast."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg2.errors
from psycopg2.extensions import connection
from psycopg2.extras import Json

_GPU_JSON = """json_build_object(
    'gpu_id', g.gpu_id, 'validator', g.validator, 'server_id', g.server_id,
    'deployment_id', g.deployment_id, 'device_info', g.device_info,
    'model_short_ref', g.model_short_ref, 'verified', g.verified)"""

_DEPLOYMENT_JSON = f"""json_build_object(
    'deployment_id', d.deployment_id, 'instance_id', d.instance_id, 'validator', d.validator,
    'host', d.host, 'port', d.port, 'chute_id', d.chute_id, 'server_id', d.server_id,
    'version', d.version, 'active', d.active, 'stub', d.stub, 'verified_at', d.verified_at,
    'job_id', d.job_id, 'config_id', d.config_id, 'created_at', d.created_at,
    'activated_at', d.activated_at, 'terminating_at', d.terminating_at,
    'gpus', coalesce((SELECT json_agg({_GPU_JSON} ORDER BY g.gpu_id)
                      FROM gpus g WHERE g.deployment_id = d.deployment_id), '[]'::json),
    'chute', (SELECT json_build_object(
        'chute_id', c.chute_id, 'name', c.name, 'version', c.version, 'image', c.image,
        'chutes_version', c.chutes_version, 'gpu_count', c.gpu_count,
        'supported_gpus', to_json(c.supported_gpus), 'ban_reason', c.ban_reason)
        FROM chutes c WHERE c.chute_id = d.chute_id))"""

_SERVER_JSON = f"""json_build_object(
    'server_id', s.server_id, 'validator', s.validator, 'name', s.name,
    'ip_address', s.ip_address, 'verification_port', s.verification_port,
    'status', s.status, 'created_at', s.created_at, 'labels', s.labels, 'seed', s.seed,
    'gpu_count', s.gpu_count, 'cpu_per_gpu', s.cpu_per_gpu,
    'memory_per_gpu', s.memory_per_gpu, 'hourly_cost', s.hourly_cost, 'locked', s.locked,
    'is_tee', false,
    'gpus', coalesce((SELECT json_agg({_GPU_JSON} ORDER BY g.gpu_id)
                      FROM gpus g WHERE g.server_id = s.server_id), '[]'::json),
    'deployments', coalesce((SELECT json_agg({_DEPLOYMENT_JSON} ORDER BY d.created_at)
                             FROM deployments d WHERE d.server_id = s.server_id), '[]'::json))"""

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


def _one_text(conn: connection, sql: str, params: tuple[Any, ...]) -> str | None:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    return None if row is None or row[0] is None else str(row[0])


def list_servers_json(conn: connection) -> str:
    sql = (
        f"SELECT coalesce(json_agg({_SERVER_JSON} ORDER BY s.name), '[]'::json)::text"
        " FROM servers s"
    )
    return _one_text(conn, sql, ()) or "[]"


def find_server(conn: connection, id_or_name: str) -> ServerRef | None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT server_id, name FROM servers WHERE name = %s OR server_id = %s"
            " ORDER BY (name = %s) DESC LIMIT 1",
            (id_or_name, id_or_name, id_or_name),
        )
        row = cur.fetchone()
    return ServerRef(row[0], row[1]) if row else None


def server_json(conn: connection, server_id: str) -> str | None:
    return _one_text(
        conn, f"SELECT {_SERVER_JSON}::text FROM servers s WHERE s.server_id = %s", (server_id,)
    )


def set_locked(conn: connection, server_id: str, locked: bool) -> str | None:
    with conn.cursor() as cur:
        cur.execute("UPDATE servers SET locked = %s WHERE server_id = %s", (locked, server_id))
    return server_json(conn, server_id)


def job_deployments_json(conn: connection, server_id: str) -> str:
    sql = (
        f"SELECT coalesce(json_agg({_DEPLOYMENT_JSON} ORDER BY d.created_at), '[]'::json)::text"
        " FROM deployments d WHERE d.server_id = %s AND d.job_id IS NOT NULL"
    )
    return _one_text(conn, sql, (server_id,)) or "[]"


def deployment_json(conn: connection, deployment_id: str) -> str | None:
    sql = f"SELECT {_DEPLOYMENT_JSON}::text FROM deployments d WHERE d.deployment_id = %s"
    return _one_text(conn, sql, (deployment_id,))


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
