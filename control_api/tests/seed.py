"""Rows for scheduler and claim tests: chutes, servers and their GPUs, inserted directly."""

from __future__ import annotations

import json
from collections.abc import Sequence

from psycopg2.extensions import connection

VALIDATOR = "5validator"


def add_chute(
    conn: connection,
    chute_id: str,
    *,
    gpu_count: int = 1,
    supported: Sequence[str] = ("h200",),
    validator: str = VALIDATOR,
    version: str = "1",
    ban_reason: str | None = None,
    code: str = "print('hi')",
    chutes_version: str = "0.3.5",
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO chutes (chute_id, validator, name, image, code, filename, ref_str,"
            " version, supported_gpus, gpu_count, chutes_version, ban_reason)"
            " VALUES (%s, %s, %s, 'user/img:1', %s, 'app.py', 'app:chute', %s, %s, %s, %s, %s)",
            (
                chute_id,
                validator,
                f"name-{chute_id}",
                code,
                version,
                list(supported),
                gpu_count,
                chutes_version,
                ban_reason,
            ),
        )


def gpu_id(server: str, i: int) -> str:
    """A 32-hex GPU id unique per (server, index)."""
    return (server.encode().hex() + f"{i:04x}").rjust(32, "0")[-32:]


def add_server(
    conn: connection,
    server_id: str,
    *,
    gpus: int = 8,
    model: str = "h200",
    hourly_cost: float = 2.0,
    validator: str = VALIDATOR,
    verified: bool = True,
    locked: bool = False,
    name: str | None = None,
    ip: str = "203.0.113.10",
) -> list[str]:
    ids = [gpu_id(server_id, i) for i in range(gpus)]
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO servers (server_id, validator, name, ip_address, gpu_count, hourly_cost,"
            " locked, status, labels) VALUES (%s, %s, %s, %s, %s, %s, %s, 'Ready', %s)",
            (
                server_id,
                validator,
                name or server_id,
                ip,
                gpus,
                hourly_cost,
                locked,
                json.dumps({"gpu-short-ref": model}),
            ),
        )
        for g in ids:
            cur.execute(
                "INSERT INTO gpus (gpu_id, validator, server_id, device_info, model_short_ref,"
                " verified) VALUES (%s, %s, %s, '{}', %s, %s)",
                (g, validator, server_id, model, verified),
            )
    return ids
