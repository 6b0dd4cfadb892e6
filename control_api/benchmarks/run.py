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
import shutil
import statistics
import subprocess
import sys
import tempfile
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


NGINX_CONF = """
worker_processes auto;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  proxy_cache_path {tmp}/cache levels=1 keys_zone=regauth:1m max_size=10m inactive=10s
                   use_temp_path=off;
  upstream regauth {{ server {upstream}; keepalive 32; }}
  server {{
    listen {listen} backlog=4096;
    root {tmp}/www;
    location = /_registry_auth {{
      internal;
      proxy_pass http://regauth/registry/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Registry-Auth-Token "{token}";
      {cache}
    }}
    location /v2/ {{
      auth_request /_registry_auth;
      auth_request_set $chutes_hotkey $upstream_http_x_chutes_hotkey;
      auth_request_set $chutes_nonce $upstream_http_x_chutes_nonce;
      auth_request_set $chutes_signature $upstream_http_x_chutes_signature;
      add_header X-Chutes-Hotkey $chutes_hotkey;
      add_header X-Chutes-Nonce $chutes_nonce;
      add_header X-Chutes-Signature $chutes_signature;
      try_files /v2/ok =404;
    }}
  }}
}}
"""
NGINX_CACHE = (
    "proxy_cache regauth; proxy_cache_key registry-auth; proxy_cache_valid 200 1s;"
    " proxy_cache_lock on; proxy_ignore_headers Cache-Control Expires Set-Cookie;"
)


def nginx_variants(upstream: str, duration: int, runs: int) -> dict[str, Any]:
    """nginx `auth_request` in front of the listener (stand-in for the registry proxy's
    config), with and without caching the subrequest for 1 s; wrk hits /v2/."""
    if shutil.which("nginx") is None:
        return {"skipped": "nginx not installed"}
    out: dict[str, Any] = {}
    for name, cache in (("nginx_cached_1s", NGINX_CACHE), ("nginx_uncached", "")):
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # cache files on tmpfs
        with tempfile.TemporaryDirectory(dir=shm) as tmp:
            os.chmod(tmp, 0o755)  # nginx workers run as an unprivileged user when started as root
            os.makedirs(f"{tmp}/www/v2")
            os.makedirs(f"{tmp}/cache", mode=0o777)
            os.chmod(f"{tmp}/cache", 0o777)
            with open(f"{tmp}/www/v2/ok", "w") as fh:
                fh.write("ok")
            conf = NGINX_CONF.format(
                tmp=tmp, upstream=upstream, listen="127.0.0.1:18002", token=TOKEN, cache=cache
            )
            with open(f"{tmp}/nginx.conf", "w") as fh:
                fh.write(conf)
            proc = subprocess.Popen(
                ["nginx", "-p", tmp, "-c", f"{tmp}/nginx.conf", "-g", "daemon off;"]
            )
            try:
                url = "http://127.0.0.1:18002/v2/"
                probe: httpx.Response | None = None
                for _ in range(100):
                    try:
                        probe = httpx.get(url, timeout=1)
                        break
                    except httpx.HTTPError:
                        time.sleep(0.05)
                if probe is None or "x-chutes-signature" not in probe.headers:
                    with open(f"{tmp}/error.log") as fh:
                        raise RuntimeError(f"nginx: {probe}: {fh.read()[-2000:]}")
                for mode, close in (("keepalive", False), ("new_connection", True)):
                    out[f"{name}_{mode}"] = _median_runs(
                        [wrk(url, duration, close) for _ in range(runs)]
                    )
            finally:
                proc.terminate()
                proc.wait(10)
    return out


def _median_runs(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "rps_median": statistics.median(r["rps"] for r in runs),
        "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
        "runs": runs,
    }


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
            result[f"auth_{mode}"] = _median_runs(runs)
        result.update(nginx_variants("127.0.0.1:18001", args.duration, args.runs))
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
