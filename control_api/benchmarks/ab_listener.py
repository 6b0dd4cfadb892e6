"""Registry-auth listener throughput, this tree against another one, interleaved (a script,
never a test). Prints one JSON summary.

    flock -o /tmp/chutes-heavy.lock python control_api/benchmarks/ab_listener.py \\
        --baseline /tmp/old/control_api/src --rounds 3

Both listeners run at once (their own processes, ports 18201 and 18202, pinned to CPU 0);
`wrk` (1 thread, 100 connections, CPU 1) alternates between them, keep-alive then a new
connection per request, `--rounds` times, so background load falls on both alike. Each figure
is the median over the rounds of one invocation. Needs `wrk`; no PostgreSQL or Redis.

`cpu_us_per_request` is the same comparison without the network and the load generator: the
listener protocol's `data_received` fed one authenticated keep-alive request at a time
(200,000 of them, into a transport that only counts bytes), in a fresh process per tree,
alternating, `--rounds` times; the median of the per-request CPU time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from control_api.core.signing import keypair_from_seed


def _load_run() -> Any:
    """benchmarks/run.py (not a package): wrk(), set_cpus() and the TOKEN its runs use."""
    spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).with_name("run.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_run()

HERE_SRC = Path(__file__).resolve().parents[1] / "src"
PORTS = {"baseline": 18201, "this_tree": 18202}
MICRO = """
import inspect, sys, time
from control_api import registry_auth as ra
from control_api.core.signing import keypair_from_seed
class T:
    n = 0
    def write(self, data): T.n += len(data)
    def close(self): pass
    def is_closing(self): return False
    def get_extra_info(self, name, default=None): return default
    def pause_reading(self): pass
    def resume_reading(self): pass
token = b"t" * 32
cache = ra.SignatureCache(keypair_from_seed("11" * 32))
args = [cache, token]
if len(inspect.signature(ra._Protocol).parameters) == 3:
    args.append(ra._Connections(ra.Limits()))
proto = ra._Protocol(*args)
proto.connection_made(T())
req = b"GET /registry/auth HTTP/1.1\\r\\nHost: x\\r\\n"
req += b"X-Registry-Auth-Token: " + token + b"\\r\\n\\r\\n"
for _ in range(20000):
    proto.data_received(req)
n = 200000
start = time.process_time()
for _ in range(n):
    proto.data_received(req)
sys.stdout.write(str((time.process_time() - start) / n * 1e6))
"""


def _micro(src: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MICRO],
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)


def _start(src: Path, port: int, seed_hex: str) -> subprocess.Popen[bytes]:
    me = keypair_from_seed(seed_hex).ss58_address
    validator = {"hotkey": me, "registry": "r", "api": "http://127.0.0.1:9", "socket": "x"}
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "MINER_SS58": me,
        "MINER_SEED": seed_hex,
        "VALIDATORS": json.dumps(
            {"defaultRegistry": "r", "defaultApi": "x", "supported": [validator]}
        ),
        "POSTGRESQL": "postgresql://unused@127.0.0.1:1/unused",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "REGISTRY_AUTH_TOKEN": bench.TOKEN,
        "REGISTRY_AUTH_HOST": "127.0.0.1",
        "REGISTRY_AUTH_PORT": str(port),
        "METRICS_PORT": "0",
        "LOG_LEVEL": "ERROR",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_api", "registry-auth"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    raise RuntimeError(f"listener from {src} did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", type=Path, required=True, help="source tree to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()
    seed_hex = secrets.token_hex(32)
    procs = {
        "baseline": _start(args.baseline.resolve(), PORTS["baseline"], seed_hex),
        "this_tree": _start(HERE_SRC, PORTS["this_tree"], seed_hex),
    }
    bench.set_cpus([p.pid for p in procs.values()], bench.SERVER_CPUS)
    result: dict[str, Any] = {
        "baseline": str(args.baseline),
        "loadavg_before": os.getloadavg(),
        "settings": f"{args.rounds} rounds x {args.duration} s, wrk -t1 -c100 on CPU 1, "
        "listeners on CPU 0",
    }
    micro: dict[str, list[float]] = {"baseline": [], "this_tree": []}
    for _ in range(args.rounds):
        micro["baseline"].append(_micro(args.baseline.resolve()))
        micro["this_tree"].append(_micro(HERE_SRC))
    result["cpu_us_per_request"] = {
        name: {"median": round(statistics.median(v), 3), "runs": [round(x, 3) for x in v]}
        for name, v in micro.items()
    }
    raw: dict[str, list[dict[str, float]]] = {}
    try:
        for _ in range(args.rounds):
            for close in (False, True):
                for name, port in PORTS.items():
                    url = f"http://127.0.0.1:{port}/registry/auth"
                    key = f"{name}/{'new_connection' if close else 'keepalive'}"
                    raw.setdefault(key, []).append(bench.wrk(url, args.duration, close, True))
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
    for key, runs in sorted(raw.items()):
        result[key] = {
            "rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "rps_runs": [r["rps"] for r in runs],
            "non_2xx": sum(r.get("non_2xx", 0) for r in runs),
        }
    result["loadavg_after"] = os.getloadavg()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
