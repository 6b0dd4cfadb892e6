"""`python -m control_api.simulate record --out trace.json [--hours 24] [--demand 1]`: a
scenario from this miner's own recent history, for replaying it against other strategies.

The fleet comes from PostgreSQL (`POSTGRESQL`: servers, their verified GPUs' model, hourly
cost), the events from the durable stream in Redis (`REDIS_URL`, `miner_events_stream`,
whatever it still holds of the last `--hours`): `chute_created` (GPU count and models from
the local chutes table; chutes that existed before are created at 0), `bounty_change` and
`job_created` (an hour each), at their stream times. Demand is
not in the stream (it is the validator's metrics): every chute gets `--demand` instances'
worth, shared with `--others` instances of other miners; edit the file to change that.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import psycopg2
import redis

from control_api.clients.events import STREAM


def _created(
    cid: str, chute: tuple[int, list[str]], t: float, demand: float, others: int
) -> list[dict[str, Any]]:
    n, models = chute
    spec = {"chute_id": cid, "gpu_count": n, "supported_gpus": models, "multiplier": 1.0}
    load = {"chute_id": cid, "demand": demand, "others": others}
    return [
        {"t": t, "kind": "chute_created", "data": spec},
        {"t": t, "kind": "demand", "data": load},
    ]


def record(
    dsn: str, redis_url: str, hours: float, demand: float, others: int, prefix: str = ""
) -> dict[str, Any]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT s.server_id, s.hourly_cost, count(g.gpu_id), min(g.model_short_ref)"
                " FROM servers s JOIN gpus g ON g.server_id = s.server_id AND g.verified"
                " GROUP BY s.server_id ORDER BY s.server_id"
            )
            servers = [
                {"count": 1, "model": m, "gpus": int(n), "hourly_cost": float(cost)}
                for _, cost, n, m in cur.fetchall()
            ]
            cur.execute("SELECT chute_id, gpu_count, supported_gpus FROM chutes")
            chutes = {r[0]: (int(r[1]), list(r[2] or [])) for r in cur.fetchall()}
    finally:
        conn.close()
    client = redis.Redis.from_url(redis_url)
    since_ms = int((time.time() - hours * 3600) * 1000)
    entries: Any = client.xrange(prefix + STREAM, min=f"{since_ms}-0", max="+")
    client.close()
    me = os.environ.get("MINER_SS58", "")
    events: list[dict[str, Any]] = []
    created: set[str] = set()
    start = None
    for entry_id, fields in entries:
        raw = fields.get(b"event")
        try:
            event = json.loads(raw or b"")
        except ValueError:
            continue
        t_ms = int(entry_id.decode().split("-")[0])
        start = t_ms if start is None else start
        t = (t_ms - start) / 1000
        kind, data = event.get("event_type"), event.get("event_data") or {}
        cid = str(data.get("chute_id") or "")
        if kind == "chute_created" and cid in chutes and cid not in created:
            created.add(cid)
            events += _created(cid, chutes[cid], t, demand, others)
        elif kind == "bounty_change" and cid:
            events.append({"t": t, "kind": "bounty_change", "data": data})
        elif kind == "job_created" and cid in chutes:
            job = {
                "job_id": data.get("job_id"),
                "chute_id": cid,
                "gpu_count": chutes[cid][0],
                "compute_multiplier": float(data.get("compute_multiplier") or 1.0),
                "duration_s": 3600,
            }
            excluded = (data.get("exclude") or []) + (data.get("excluded") or [])
            job["exclude"] = ["5us"] if me and me in excluded else []  # the simulator's miner
            events.append({"t": t, "kind": "job_created", "data": job})
    for cid in sorted(set(chutes) - created):  # chutes that existed before the window
        events[:0] = _created(cid, chutes[cid], 0.0, demand, others)
    return {
        "name": "recorded",
        "description": f"recorded from the stream, last {hours:g} h; demand {demand:g} per chute",
        "duration_h": hours,
        "price_per_unit_hour": 1.0,
        "servers": servers,
        "events": events,
    }
