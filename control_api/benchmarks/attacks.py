"""Issue #16 attacks and faults, measured (a script, never a test). Prints one JSON summary.

    flock -o /tmp/chutes-heavy.lock python control_api/benchmarks/attacks.py
    flock -o /tmp/chutes-heavy.lock python control_api/benchmarks/attacks.py --src /tmp/old/src

`--src` runs the servers from another source tree (an older commit, via `git archive`) so the
same attacks can be compared before and after; the client side always uses this tree. Needs
PostgreSQL and Redis on 127.0.0.1. Every figure is one run; latencies are medians (and max)
over the requests of that run. The load average before and after is recorded.

- `big_body`: one unauthenticated `POST /servers/` announcing a 200 MB body, sent in 1 MB
  chunks until the API answers or closes: the answer, how much the client got to send, and the
  API process's peak RSS (VmHWM) growth.
- `big_header`: `GET /ping` with a 64 MB header, the same way.
- `listener_flood`: one connection pipelines 20,000 `GET /metrics` requests and reads nothing;
  meanwhile 50 authenticated pulls, one after another on their own keep-alive connection.
- `idle_connections`: 2,000 idle connections held open to the listener, started with a
  descriptor limit of 1024 (soft = hard, containerd 2's default soft limit, no room to raise
  it), then 200 pulls, a new connection each (what nginx does without upstream keepalive).
- `hung_postgresql`: the API's PostgreSQL behind a proxy that goes silent (connections stay
  open, nothing is answered); 40 concurrent signed `GET /servers/` and `/ping` meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg2
from control_api.core.signing import d1_headers, keypair_from_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.faults: the silent proxy
from tests.faults import FreezableProxy, through  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/"
TOKEN = secrets.token_hex(16)
API_PORT, AUTH_PORT = 18100, 18101
HERE_SRC = Path(__file__).resolve().parents[1] / "src"


def hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _env(seed_hex: str, dsn: str, src: Path) -> dict[str, str]:
    me = keypair_from_seed(seed_hex).ss58_address
    validator = {"hotkey": me, "registry": "r", "api": "http://127.0.0.1:9"}
    validator["socket"] = "http://127.0.0.1:9"
    validators = {"defaultRegistry": "r", "defaultApi": "http://127.0.0.1:9"}
    return {
        **os.environ,
        "PYTHONPATH": str(src),
        "MINER_SS58": me,
        "MINER_SEED": seed_hex,
        "VALIDATORS": json.dumps({**validators, "supported": [validator]}),
        "POSTGRESQL": dsn,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "REGISTRY_AUTH_TOKEN": TOKEN,
        "API_PORT": str(API_PORT),
        "REGISTRY_AUTH_PORT": str(AUTH_PORT),
        "API_HOST": "127.0.0.1",
        "REGISTRY_AUTH_HOST": "127.0.0.1",
        "METRICS_PORT": "0",
        "LOG_LEVEL": "ERROR",
        "KUBERNETES_REQUIRED": "false",
        "KUBECONFIG": "/nonexistent",
    }


@contextmanager
def process(
    command: str, env: dict[str, str], port: int, nofile: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        [sys.executable, "-m", "control_api", command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=limit,  # noqa: PLW1509 - only setrlimit, before exec
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command} did not start") from None
                time.sleep(0.1)
        time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _send_until_answered(port: int, head: bytes, total: int, chunk: bytes) -> dict[str, Any]:
    """Send `head`, then `chunk`s up to `total` bytes, until the server answers or closes."""
    start = time.monotonic()
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(0)
        try:
            s.sendall(head)
            while sent < total:
                try:
                    answer += s.recv(4096)
                    break
                except BlockingIOError:
                    pass
                try:
                    sent += s.send(chunk[: total - sent])
                except BlockingIOError:
                    time.sleep(0.001)
            s.settimeout(30)
            if not answer:
                answer = s.recv(4096)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") if answer else "no answer"
    return {
        "answer": status,
        "client_sent_mb": round(sent / 2**20, 1),
        "seconds": round(time.monotonic() - start, 2),
    }


def big_inputs(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mb = b"x" * 2**20
    with process("api", env, API_PORT) as api:
        before = hwm_mb(api.pid)
        head = b"POST /servers/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (200 * 2**20)
        out["big_body"] = _send_until_answered(API_PORT, head, 200 * 2**20, mb)
        out["big_body"]["api_peak_rss_growth_mb"] = round(hwm_mb(api.pid) - before, 1)
    with process("api", env, API_PORT) as api:
        before = hwm_mb(api.pid)
        head = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Pad: "
        out["big_header"] = _send_until_answered(API_PORT, head, 64 * 2**20, mb)
        out["big_header"]["api_peak_rss_growth_mb"] = round(hwm_mb(api.pid) - before, 1)
    return out


def _pull_latencies(n: int, keep_alive: bool) -> tuple[list[float], int]:
    """`n` authenticated pulls over raw sockets (no client library in the timing): on one
    keep-alive connection, or a new connection each."""
    request = (
        b"GET /registry/auth HTTP/1.1\r\nHost: x\r\nX-Registry-Auth-Token: "
        + TOKEN.encode()
        + (b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n")
    )
    times, failed = [], 0
    conn: socket.socket | None = None
    for _ in range(n):
        start = time.monotonic()
        try:
            if conn is None:
                conn = socket.create_connection(("127.0.0.1", AUTH_PORT), timeout=10)
            conn.sendall(request)
            answer = b""
            while not answer.endswith(b"}"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
            if not keep_alive:
                conn.close()
                conn = None
            if not answer.startswith(b"HTTP/1.1 200"):
                failed += 1
                continue
        except OSError:
            failed += 1
            if conn is not None:
                conn.close()
            conn = None
            continue
        times.append((time.monotonic() - start) * 1000)
    if conn is not None:
        conn.close()
    return times, failed


def _summary(times: list[float], failed: int) -> dict[str, Any]:
    if not times:
        return {"ok": 0, "failed": failed}
    ordered = sorted(times)
    return {
        "ok": len(times),
        "failed": failed,
        "median_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def listener_flood(env: dict[str, str]) -> dict[str, Any]:
    with process("registry-auth", env, AUTH_PORT) as proc:
        before = hwm_mb(proc.pid)
        flood = socket.create_connection(("127.0.0.1", AUTH_PORT))
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 20_000
        sender = threading.Thread(target=flood.sendall, args=(request,), daemon=True)
        sender.start()
        time.sleep(0.2)
        times, failed = _pull_latencies(50, keep_alive=True)
        result = _summary(times, failed)
        result["listener_peak_rss_growth_mb"] = round(hwm_mb(proc.pid) - before, 1)
        flood.close()
    return result


def idle_connections(env: dict[str, str]) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8192), max(hard, 8192)))
    with process("registry-auth", env, AUTH_PORT, nofile=1024):
        idle: list[socket.socket] = []
        try:
            for _ in range(2000):
                idle.append(socket.create_connection(("127.0.0.1", AUTH_PORT), timeout=5))
            time.sleep(0.5)
            times, failed = _pull_latencies(200, keep_alive=False)
            result = _summary(times, failed)
            alive = 0
            for sock in idle:
                sock.settimeout(0)
                try:
                    alive += sock.recv(1) != b""
                except BlockingIOError:
                    alive += 1
                except OSError:
                    pass
            result["idle_still_open"] = alive
        finally:
            for sock in idle:
                sock.close()
    return result


def hung_postgresql(env: dict[str, str], dsn: str, seed_hex: str) -> dict[str, Any]:
    key = keypair_from_seed(seed_hex)
    with FreezableProxy("127.0.0.1", 5432) as proxy:
        env = env | {"POSTGRESQL": through(dsn, proxy.port)}
        with process("api", env, API_PORT), httpx.Client(timeout=30) as http:
            url = f"http://127.0.0.1:{API_PORT}"

            def servers() -> tuple[str, float]:
                start = time.monotonic()
                try:
                    resp = http.get(url + "/servers/", headers=d1_headers(key, "management"))
                    status = str(resp.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                return status, (time.monotonic() - start) * 1000

            warm = servers()
            proxy.freeze()
            with ThreadPoolExecutor(40) as pool:
                pending = [pool.submit(servers) for _ in range(40)]
                time.sleep(0.2)
                pings = []
                for _ in range(10):
                    start = time.monotonic()
                    try:
                        http.get(url + "/ping", timeout=30)
                        pings.append((time.monotonic() - start) * 1000)
                    except httpx.HTTPError:
                        pings.append(30_000.0)
                answers = [f.result() for f in pending]
            proxy.thaw()
    statuses: dict[str, int] = {}
    for status, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    took = sorted(t for _, t in answers)
    return {
        "before_freeze": warm[0],
        "answers": statuses,
        "answer_median_ms": round(statistics.median(took)),
        "answer_max_ms": round(took[-1]),
        "ping_median_ms": round(statistics.median(pings), 1),
        "ping_max_ms": round(max(pings), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, default=HERE_SRC, help="source tree of the servers")
    args = ap.parse_args()
    seed_hex = secrets.token_hex(32)
    dbname = f"control_api_attacks_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG + "postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{dbname}"')
    dsn = PG + dbname
    env = _env(seed_hex, dsn, args.src.resolve())
    result: dict[str, Any] = {"src": str(args.src), "loadavg_before": os.getloadavg()}
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "big_inputs": lambda: big_inputs(env),
        "listener_flood": lambda: listener_flood(env),
        "idle_connections": lambda: idle_connections(env),
        "hung_postgresql": lambda: hung_postgresql(env, dsn, seed_hex),
    }
    try:
        subprocess.run(
            [sys.executable, "-m", "control_api", "migrate"], env=env, check=True, timeout=120
        )
        for name, step in steps.items():
            try:
                result[name] = step()
            except Exception as exc:  # noqa: BLE001 - one failed attack must not hide the rest
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()
    result["loadavg_after"] = os.getloadavg()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
