"""Benchmarks (a script, never a test): registry-auth listener with wrk (keep-alive and
new connection per request), GET /servers/ with 500 servers x 8 GPUs x 4 deployments (p50, RSS
growth) while wrk hammers the auth listener, and idle API RSS. Prints one JSON summary.

    python control_api/benchmarks/run.py [--runs 3] [--duration 5]
Needs PostgreSQL and Redis on 127.0.0.1 and `wrk` on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import psycopg2
from bittensor_wallet import Keypair
from control_api.db.migrate import migrate
from control_api.services.signing import d1_headers, keypair_from_seed
from psycopg2.extras import Json

PG = "postgresql://postgres@127.0.0.1:5432/"
TOKEN = secrets.token_hex(16)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        match = re.search(r"VmRSS:\s+(\d+) kB", fh.read())
    return int(match.group(1)) / 1024 if match else 0.0


def wrk(url: str, duration: int, close: bool, conns: int = 100) -> dict[str, float]:
    cmd = [
        "wrk",
        "-t2",
        f"-c{conns}",
        f"-d{duration}s",
        "--latency",
        "-H",
        f"X-Registry-Auth-Token: {TOKEN}",
    ]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale}


def seed(dsn: str, validator: str, servers: int = 500, gpus: int = 8, deps: int = 4) -> None:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO chutes (chute_id, validator, name, image, code, filename,"
            " ref_str, version, supported_gpus, gpu_count) VALUES ('c', %s, 'llm',"
            " 'u/llm:1', 'x', 'a.py', 'a:c', '1', ARRAY['h200'], 2)",
            (validator,),
        )
        for s in range(servers):
            sid = str(uuid.uuid4())
            cur.execute(
                "INSERT INTO servers (server_id, validator, name, ip_address, gpu_count,"
                " hourly_cost) VALUES (%s, %s, %s, '10.0.0.1', %s, 2.0)",
                (sid, validator, f"node-{s:03d}", gpus),
            )
            dep_ids = [str(uuid.uuid4()) for _ in range(deps)]
            for d in dep_ids:
                cur.execute(
                    "INSERT INTO deployments (deployment_id, validator, host, port,"
                    " chute_id, server_id, version) VALUES (%s, %s, '10.0.0.1', 30000,"
                    " 'c', %s, '1')",
                    (d, validator, sid),
                )
            for g in range(gpus):
                info = {
                    "uuid": uuid.uuid4().hex,
                    "name": "NVIDIA H200",
                    "memory": 150 * 2**30,
                    "processors": 132,
                    "clock_rate": 1980000.0,
                }
                cur.execute(
                    "INSERT INTO gpus (gpu_id, validator, server_id, deployment_id,"
                    " device_info, model_short_ref, verified) VALUES (%s, %s, %s, %s,"
                    " %s, 'h200', true)",
                    (info["uuid"], validator, sid, dep_ids[g // 2], Json(info)),
                )
    conn.close()


def time_servers(api: str, key: Keypair, seconds: int) -> dict[str, Any]:
    """GET /servers/ back to back for `seconds`; latency includes reading the whole body."""
    timings: list[float] = []
    size = 0
    with httpx.Client(timeout=60) as http:
        end = time.time() + seconds
        while time.time() < end:
            t = time.perf_counter()
            resp = http.get(api + "/servers/", headers=d1_headers(key, "management"))
            timings.append((time.perf_counter() - t) * 1000)
            resp.raise_for_status()
            size = len(resp.content)
    return {
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(sorted(timings)[int(len(timings) * 0.95)], 1),
        "requests": len(timings),
        "bytes": size,
    }


def wait_port(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url + "/ping", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()
    seed_hex = secrets.token_hex(32)
    key = keypair_from_seed(seed_hex)
    dbname = f"control_api_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG + "postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{dbname}"')
    dsn = PG + dbname
    migrate(dsn)
    env = {
        **os.environ,
        "MINER_SS58": key.ss58_address,
        "MINER_SEED": seed_hex,
        "VALIDATORS": json.dumps(
            {
                "defaultRegistry": "r",
                "defaultApi": "http://127.0.0.1:9",
                "supported": [
                    {
                        "hotkey": key.ss58_address,
                        "registry": "r",
                        "api": "http://127.0.0.1:9",
                        "socket": "http://127.0.0.1:9",
                    }
                ],
            }
        ),
        "POSTGRESQL": dsn,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "REGISTRY_AUTH_TOKEN": TOKEN,
        "API_PORT": "18000",
        "REGISTRY_AUTH_PORT": "18001",
        "METRICS_PORT": "0",
        "API_HOST": "127.0.0.1",
        "REGISTRY_AUTH_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "CONTROL_API_MIGRATE": "false",
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", "control_api", cmd], env=env)
        for cmd in ("api", "registry-auth")
    ]
    api, auth = "http://127.0.0.1:18000", "http://127.0.0.1:18001"
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs, " + os.uname().release}
    try:
        wait_port(api)
        wait_port(auth)
        time.sleep(1)
        result["api_idle_rss_mb"] = round(rss_mb(procs[0].pid), 1)
        for mode, close in (("keepalive", False), ("new_connection", True)):
            runs = [wrk(auth + "/registry/auth", args.duration, close) for _ in range(args.runs)]
            result[f"auth_{mode}"] = {
                "rps_median": statistics.median(r["rps"] for r in runs),
                "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
                "runs": runs,
            }
        seed(dsn, key.ss58_address)
        before = rss_mb(procs[0].pid)
        result["servers_500x8x4_alone"] = time_servers(api, key, args.duration * 2)
        side: dict[str, Any] = {}
        load = threading.Thread(
            target=lambda: side.update(wrk(auth + "/registry/auth", args.duration * 2, False))
        )
        load.start()
        loaded = time_servers(api, key, args.duration * 2)
        load.join()
        result["servers_500x8x4"] = {
            **loaded,
            "rss_before_mb": round(before, 1),
            "rss_after_mb": round(rss_mb(procs[0].pid), 1),
            "auth_keepalive_meanwhile": side,
        }
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
