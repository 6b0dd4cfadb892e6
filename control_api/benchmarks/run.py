"""Benchmarks for issue #6 (a script, never a test). Prints one JSON summary; every wrk figure is
the median of `--runs` runs of `--duration` seconds, 100 connections, `--latency`.

    flock -o /tmp/chutes-heavy.lock python control_api/benchmarks/run.py --runs 3

Needs PostgreSQL and Redis on 127.0.0.1, `wrk` on PATH (`tests/lab/setup-host.sh` installs
it) and `nginx` for the nginx rows (`apt-get install nginx-light`). Run it on a quiet machine:
the summary records the load average before and after.

What it measures, side by side in one run:

- `ceiling`: what this machine allows at all under the same wrk settings: a bare uvloop
  `asyncio.Protocol` that answers a constant without parsing, and nginx `return 200`.
- `auth`: the registry-auth listener directly, keep-alive and new connection per request
  (`Connection: close`, what nginx's `auth_request` does without upstream keepalive); nginx
  `auth_request` in front of it with the subrequest cached for 1 s and uncached.
- Placement, for every row of those two: `shared` = server and wrk (2 threads) scheduled freely
  over all CPUs, as upstream measured; `pinned` = the servers (listener, nginx workers) on CPU 0
  and wrk (1 thread) on CPU 1, set with `sched_setaffinity` (`taskset`), so the load generator
  never takes the server's core. On a 2-CPU machine `shared` tail latency is mostly scheduler
  time slices between wrk and the server; `pinned` shows the server's own tail. Both are
  reported; neither is the other relabelled.
- `servers_500x8x4`: `GET /servers/` with 500 servers x 8 GPUs x 4 deployments, back to back
  over one keep-alive connection (latency includes reading the whole body): `cached` (no
  inventory change between requests), `after_each_write` (a committed write by another
  connection before every request, so every answer is a fresh render), the API worker's RSS
  before/after and its high-water mark, and the auth listener (keep-alive, shared) alone vs
  while each `/servers/` loop runs.
- `api_idle_rss_mb`: the API process after startup, before any request; again at the end.

With 100 connections in a closed loop, mean latency = 100 / throughput (Little's law): a row
under 20k req/s cannot have a p99 under 5 ms.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg2
from bittensor_wallet import Keypair
from control_api.core.signing import d1_headers, keypair_from_seed
from control_api.db.migrate import migrate
from psycopg2.extras import Json

PG = "postgresql://postgres@127.0.0.1:5432/"
TOKEN = secrets.token_hex(16)
CONNECTIONS = 100
SERVER_CPUS = {0}
WRK_CPUS = {1}
ALL_CPUS = set(range(os.cpu_count() or 1))
API_PORT, AUTH_PORT, BARE_PORT = 18000, 18001, 18005
NGINX_CACHED, NGINX_UNCACHED, NGINX_RETURN = 18002, 18003, 18004

BARE_SERVER = """
import asyncio, sys
ka = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: keep-alive\\r\\n\\r\\nok"
close = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d):
        if b"onnection: close" in d: self.t.write(close); self.t.close()
        else: self.t.write(ka * d.count(b"\\r\\n\\r\\n"))
async def main():
    await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await asyncio.Event().wait()
try:
    import uvloop; uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as fh:
        match = re.search(rf"{field}:\s+(\d+) kB", fh.read())
    return round(int(match.group(1)) / 1024, 1) if match else 0.0


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def set_cpus(pids: list[int], cpus: set[int]) -> None:
    """Affinity of every thread of these processes and their children (taskset -a -p)."""
    for pid in pids:
        for p in [pid, *_children(pid)]:
            for tid in os.listdir(f"/proc/{p}/task"):
                try:
                    os.sched_setaffinity(int(tid), cpus)
                except OSError:
                    pass


def wrk(
    url: str, duration: int, close: bool, pinned: bool, headers: tuple[str, ...] = ()
) -> dict[str, float]:
    cmd = ["taskset", "-c", ",".join(map(str, sorted(WRK_CPUS)))] if pinned else []
    cmd += ["wrk", f"-t{1 if pinned else 2}", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency"]
    for h in (f"X-Registry-Auth-Token: {TOKEN}", *headers):
        cmd += ["-H", h]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps is not None, out
    result: dict[str, float] = {"rps": round(float(rps.group(1)))}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m is not None, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        result[f"p{pct}_ms"] = round(float(m.group(1)) * scale, 2)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:  # counted in rps by wrk: reported, never hidden
        result["non_2xx"] = int(non2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        result["socket_errors"] = sum(int(n) for n in errors.groups())
    return result


def _median_runs(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "runs": runs,
    }


def matrix(
    targets: dict[str, tuple[str, list[int]]], duration: int, runs: int
) -> dict[str, dict[str, Any]]:
    """Each target x (keep-alive, new connection) x (shared, pinned); runs interleaved so a
    burst of background load does not land on one row only."""
    raw: dict[str, list[dict[str, float]]] = {}
    for _ in range(runs):
        for placement in ("shared", "pinned"):
            pinned = placement == "pinned"
            for name, (url, pids) in targets.items():
                set_cpus(pids, SERVER_CPUS if pinned else ALL_CPUS)
                for mode, close in (("keepalive", False), ("new_connection", True)):
                    key = f"{name}.{mode}.{placement}"
                    raw.setdefault(key, []).append(wrk(url, duration, close, pinned))
    for _, pids in targets.values():
        set_cpus(pids, ALL_CPUS)
    out: dict[str, dict[str, Any]] = {}
    for key, results in raw.items():
        name, mode, placement = key.split(".")
        out.setdefault(name, {}).setdefault(mode, {})[placement] = _median_runs(results)
    return out


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
  server {{ listen 127.0.0.1:{cached} backlog=4096; {site_cached} }}
  server {{ listen 127.0.0.1:{uncached} backlog=4096; {site_uncached} }}
  server {{ listen 127.0.0.1:{ret} backlog=4096; location / {{ return 200 "ok"; }} }}
}}
"""
NGINX_SITE = """
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
"""
# proxy_cache_lock stays off: nginx's lock waiters poll every 500 ms (no wake-up when the
# refresh lands), which put a 400-450 ms p99 on the keep-alive row; without the lock the
# requests that find the entry expired each ask the listener, which is built for that.
NGINX_CACHE = (
    "proxy_cache regauth; proxy_cache_key registry-auth; proxy_cache_valid 200 1s;"
    " proxy_cache_lock off; proxy_ignore_headers Cache-Control Expires Set-Cookie;"
)


@contextmanager
def nginx(upstream: str) -> Iterator[subprocess.Popen[bytes] | None]:
    """nginx `auth_request` in front of the listener (stand-in for the registry proxy's
    config) with and without a 1 s cache of the subrequest, plus a `return 200` server."""
    if shutil.which("nginx") is None:
        yield None
        return
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # cache files on tmpfs
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        os.chmod(tmp, 0o755)  # nginx workers run as an unprivileged user when started as root
        os.makedirs(f"{tmp}/www/v2")
        os.makedirs(f"{tmp}/cache", mode=0o777)
        os.chmod(f"{tmp}/cache", 0o777)
        with open(f"{tmp}/www/v2/ok", "w") as fh:
            fh.write("ok")
        conf = NGINX_CONF.format(
            tmp=tmp,
            upstream=upstream,
            cached=NGINX_CACHED,
            uncached=NGINX_UNCACHED,
            ret=NGINX_RETURN,
            site_cached=NGINX_SITE.format(tmp=tmp, token=TOKEN, cache=NGINX_CACHE),
            site_uncached=NGINX_SITE.format(tmp=tmp, token=TOKEN, cache=""),
        )
        with open(f"{tmp}/nginx.conf", "w") as fh:
            fh.write(conf)
        proc = subprocess.Popen(
            ["nginx", "-p", tmp, "-c", f"{tmp}/nginx.conf", "-g", "daemon off;"]
        )
        try:
            for port in (NGINX_CACHED, NGINX_UNCACHED):
                url = f"http://127.0.0.1:{port}/v2/"
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
            yield proc
        finally:
            proc.terminate()
            proc.wait(10)


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


def time_servers(
    api: str, key: Keypair, seconds: float, before_each: Callable[[], None] | None = None
) -> dict[str, Any]:
    """GET /servers/ back to back for `seconds`; latency includes reading the whole body."""
    timings: list[float] = []
    size = 0
    with httpx.Client(timeout=60) as http:
        end = time.time() + seconds
        while time.time() < end:
            if before_each is not None:
                before_each()
            t = time.perf_counter()
            resp = http.get(api + "/servers/", headers=d1_headers(key, "management"))
            body = resp.content
            timings.append((time.perf_counter() - t) * 1000)
            resp.raise_for_status()
            size = len(body)
    timings.sort()
    return {
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[int(len(timings) * 0.95)], 1),
        "max_ms": round(timings[-1], 1),
        "requests": len(timings),
        "bytes": size,
    }


def servers_section(
    api: str, auth: str, api_pid: int, dsn: str, key: Keypair, seconds: int
) -> dict[str, Any]:
    seed(dsn, key.ss58_address)
    writer = psycopg2.connect(dsn)
    writer.autocommit = True
    with writer.cursor() as cur:  # now, so autovacuum does not start during a measurement
        cur.execute("VACUUM ANALYZE")

    def write() -> None:  # a committed change by another process, as gepetto's would be
        with writer.cursor() as cur:
            cur.execute("UPDATE servers SET locked = NOT locked WHERE name = 'node-000'")

    def auth_load(result: dict[str, Any]) -> threading.Thread:
        def run() -> None:
            result.update(wrk(auth + "/registry/auth", seconds, False, False))

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.3)  # wrk connected before the timed loop starts
        return thread

    out: dict[str, Any] = {"rss_before_mb": rss_mb(api_pid)}
    out["cached"] = time_servers(api, key, seconds)
    out["after_each_write"] = time_servers(api, key, seconds, write)
    for name, hook in (("cached", None), ("after_each_write", write)):
        alone = wrk(auth + "/registry/auth", seconds, False, False)  # the adjacent baseline
        side: dict[str, Any] = {}
        thread = auth_load(side)
        loaded = time_servers(api, key, seconds - 0.6, hook)
        thread.join()
        out[f"{name}_under_auth_load"] = {
            **loaded,
            "auth_keepalive_alone_just_before": alone,
            "auth_keepalive_meanwhile": side,
        }
    out["rss_after_mb"] = rss_mb(api_pid)
    out["rss_peak_mb"] = rss_mb(api_pid, "VmHWM")
    out["rss_growth_mb"] = round(out["rss_after_mb"] - out["rss_before_mb"], 1)
    writer.close()
    return out


def wait_port(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url + "/ping", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def _env(key: Keypair, seed_hex: str, dsn: str) -> dict[str, str]:
    me = key.ss58_address
    validators = {
        "defaultRegistry": "r",
        "defaultApi": "http://127.0.0.1:9",
        "supported": [
            {
                "hotkey": me,
                "registry": "r",
                "api": "http://127.0.0.1:9",
                "socket": "http://127.0.0.1:9",
            }
        ],
    }
    return {
        **os.environ,
        "MINER_SS58": me,
        "MINER_SEED": seed_hex,
        "VALIDATORS": json.dumps(validators),
        "POSTGRESQL": dsn,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "REGISTRY_AUTH_TOKEN": TOKEN,
        "API_PORT": str(API_PORT),
        "REGISTRY_AUTH_PORT": str(AUTH_PORT),
        "METRICS_PORT": "0",
        "API_HOST": "127.0.0.1",
        "REGISTRY_AUTH_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "CONTROL_API_MIGRATE": "false",
        "KUBERNETES_REQUIRED": "false",  # no cluster here: add-node is not measured
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()
    if len(ALL_CPUS) < 2:
        raise SystemExit("needs at least 2 CPUs (pinned rows put wrk and the server apart)")
    seed_hex = secrets.token_hex(32)
    key = keypair_from_seed(seed_hex)
    dbname = f"control_api_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG + "postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{dbname}"')
    dsn = PG + dbname
    migrate(dsn)
    env = _env(key, seed_hex, dsn)
    procs = [
        subprocess.Popen([sys.executable, "-m", "control_api", cmd], env=env, stdout=sys.stderr)
        for cmd in ("api", "registry-auth")  # their logs go to stderr: stdout is the summary
    ]
    procs.append(
        subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(BARE_PORT)], stdout=sys.stderr)
    )
    api, auth = f"http://127.0.0.1:{API_PORT}", f"http://127.0.0.1:{AUTH_PORT}"
    result: dict[str, Any] = {
        "machine": f"{len(ALL_CPUS)} CPUs, kernel {os.uname().release}",
        "loadavg_before": os.getloadavg(),
        "settings": {
            "runs": args.runs,
            "duration_s": args.duration,
            "connections": CONNECTIONS,
            "shared": "wrk -t2 and the servers on all CPUs",
            "pinned": f"servers on CPU {sorted(SERVER_CPUS)}, wrk -t1 on CPU {sorted(WRK_CPUS)}",
        },
    }
    try:
        wait_port(api)
        wait_port(auth)
        time.sleep(1)
        result["api_idle_rss_mb"] = rss_mb(procs[0].pid)
        with nginx(f"127.0.0.1:{AUTH_PORT}") as ngx:
            bare = f"http://127.0.0.1:{BARE_PORT}/"
            targets = {"bare_asyncio": (bare, [procs[2].pid])}
            auth_pids = [procs[1].pid]
            targets["listener"] = (auth + "/registry/auth", auth_pids)
            if ngx is None:
                result["nginx"] = "skipped: nginx not installed"
            else:
                both = [ngx.pid, procs[1].pid]
                targets["nginx_return_200"] = (f"http://127.0.0.1:{NGINX_RETURN}/", [ngx.pid])
                targets["nginx_cached_1s"] = (f"http://127.0.0.1:{NGINX_CACHED}/v2/", both)
                targets["nginx_uncached"] = (f"http://127.0.0.1:{NGINX_UNCACHED}/v2/", both)
            rows = matrix(targets, args.duration, args.runs)
        result["ceiling"] = {
            k: rows.pop(k) for k in ("bare_asyncio", "nginx_return_200") if k in rows
        }
        result["auth"] = rows
        result["servers_500x8x4"] = servers_section(
            api, auth, procs[0].pid, dsn, key, args.duration * 2
        )
        result["api_rss_end_mb"] = rss_mb(procs[0].pid)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()
    result["loadavg_after"] = os.getloadavg()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
