#!/usr/bin/env python3
"""Probe timing benchmark for chutes.miner.mirrors (medians over N runs).

engine  The probe engine in-process against local stand-ins (tests/lab/fault_server.py
        and two UDP responders on 127.0.0.1): a full probe of a tuna-shaped plan (every
        resource, 29 candidates) with healthy mirrors, the same with one hanging
        candidate per resource (bounded by the timeout), and the recorded-choice re-check.
role    The role itself over SSH: ``ansible-playbook`` of a converge playbook on a lab
        node with ``mirrors_reprobe=true`` (full probe) against a rerun that reuses the
        recorded choice (no changes). Needs a converged node, e.g. after
        ``molecule converge -s mirrors``; pass molecule's inventory.

Usage:
  benchmarks/mirrors_probe.py engine [--runs 7]
  benchmarks/mirrors_probe.py role --inventory INV --playbook molecule/mirrors/converge.yml
                                   [--limit HOST] [--runs 5]
Nothing here contacts a public address. The whole-play no-change rerun on 1 and on 3 lab
nodes, against a baseline play without the role, is ``benchmarks/mirrors_rerun.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "collections"))
sys.path.insert(0, str(REPO))

from ansible_collections.chutes.miner.plugins.module_utils import mirror_probing as probing  # noqa: E402
from ansible_collections.chutes.miner.plugins.module_utils.mirrors_plan import (  # noqa: E402
    PlanRequest,
    build_plan,
)

from tests.lab import fault_server  # noqa: E402


def _udp_responder(reply: Callable[[bytes], bytes]) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def loop() -> None:
        while True:
            try:
                data, addr = sock.recvfrom(512)
            except OSError:
                return
            sock.sendto(reply(data), addr)

    threading.Thread(target=loop, daemon=True).start()
    return sock, sock.getsockname()[1]


def _ntp_reply(_: bytes) -> bytes:
    return b"\x24\x02" + b"\0" * 38 + int(time.time() + 2208988800).to_bytes(4, "big") + b"\0" * 4


def _dns_reply(query: bytes) -> bytes:
    return query[:2] + b"\x81\x80" + query[4:]


def _local_specs() -> list[dict[str, Any]]:
    role = REPO / "collections/ansible_collections/chutes/miner/roles/mirrors"
    catalog = yaml.safe_load((role / "vars/catalog.yml").read_text())
    defaults = yaml.safe_load((role / "vars/main.yml").read_text())["__mirrors_resource_defaults"]
    defaults["registries"]["required_images"] = catalog["__mirrors_canaries"]
    defaults["files"]["probe_artifact"] = {
        "path": "github.com/o/r/a.txt",
        "sha256": fault_server.FILE_SHA256,
    }
    defaults["huggingface"]["probe_path"] = "/"
    plan = build_plan(
        PlanRequest(
            catalog["__mirrors_catalog"],
            profiles=catalog["__mirrors_profiles"],
            upstream=catalog["__mirrors_upstream"],
            defaults=defaults,
            profile="tuna",
            host={
                "distribution": "Debian",
                "version": "12",
                "codename": "bookworm",
                "arch": "x86_64",
            },
        )
    )
    return list(plan["probes"])


def engine(runs: int, timeout: float) -> dict[str, Any]:
    servers = fault_server.serve("127.0.0.1", [("ok", 0), ("hang", 0)], hang_s=timeout + 1)
    ok = f"http://127.0.0.1:{servers[0][1].server_address[1]}"
    hang = f"http://127.0.0.1:{servers[1][1].server_address[1]}"
    ntp_sock, ntp_port = _udp_responder(_ntp_reply)
    dns_sock, dns_port = _udp_responder(_dns_reply)
    specs = _local_specs()
    healthy: list[dict[str, Any]] = []
    for s in specs:
        s = dict(s)
        if s["kind"] in ("ntp", "dns"):
            s.update(url="127.0.0.1", port=ntp_port if s["kind"] == "ntp" else dns_port)
        else:
            s["url"] = ok + "/" + s["key"].replace("/", "_")
            if s["kind"] == "registry":
                s["override_path"] = True
        healthy.append(s)
    seen: set[str] = set()
    degraded = []
    for s in healthy:
        group = s["group"]
        if group not in seen and s["kind"] not in ("ntp", "dns"):
            seen.add(group)
            degraded.append({**s, "url": hang + "/x", "override_path": True})
        degraded.append(s)
    first: dict[str, str] = {}
    for s in healthy:
        first.setdefault(s["group"], s["key"])

    def median(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return round(statistics.median(times), 3)

    out = {
        "probes": len(healthy),
        "timeout_s": timeout,
        "full_probe_healthy_s": median(lambda: probing.probe_all(healthy, timeout)),
        "full_probe_one_hang_per_resource_s": median(lambda: probing.probe_all(degraded, timeout)),
        "recorded_recheck_s": median(
            lambda: probing.probe_with_record(healthy, list(first.values()), timeout)
        ),
        "runs": runs,
    }
    for _, srv in servers:
        srv.shutdown()
    ntp_sock.close()
    dns_sock.close()
    return out


def role(inventory: str, playbook: str, limit: str | None, runs: int) -> dict[str, Any]:
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    env["ANSIBLE_COLLECTIONS_PATH"] = f"{REPO}/collections:" + env.get(
        "ANSIBLE_COLLECTIONS_PATH", ""
    )

    def once(reprobe: bool) -> tuple[float, int, str]:
        cmd = [
            "ansible-playbook",
            "-i",
            inventory,
            playbook,
            "-e",
            f"mirrors_reprobe={str(reprobe).lower()}",
        ]
        if limit:
            cmd += ["--limit", limit]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        elapsed = time.perf_counter() - start
        data = json.loads(proc.stdout[proc.stdout.index("{") :])
        changed = sum(h.get("changed", 0) for h in data["stats"].values())
        mode = ""
        for play in data["plays"]:
            for task in play["tasks"]:
                for res in task["hosts"].values():
                    if isinstance(res, dict) and "mode" in res and "results" in res:
                        mode = str(res["mode"])
        return elapsed, changed, mode

    full = [once(True) for _ in range(runs)]
    rerun = [once(False) for _ in range(runs)]
    return {
        "runs": runs,
        "full_probe_play_s": round(statistics.median(t for t, _, _ in full), 2),
        "full_probe_modes": sorted({m for _, _, m in full}),
        "recorded_rerun_play_s": round(statistics.median(t for t, _, _ in rerun), 2),
        "recorded_rerun_modes": sorted({m for _, _, m in rerun}),
        "recorded_rerun_changed": max(c for _, c, _ in rerun),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    eng = sub.add_parser("engine")
    eng.add_argument("--runs", type=int, default=7)
    eng.add_argument("--timeout", type=float, default=3.0)
    rol = sub.add_parser("role")
    rol.add_argument("--inventory", required=True)
    rol.add_argument("--playbook", default=str(REPO / "molecule/mirrors/converge.yml"))
    rol.add_argument("--limit")
    rol.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.cmd == "engine":
        result = engine(args.runs, args.timeout)
    else:
        result = role(args.inventory, args.playbook, args.limit, args.runs)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
