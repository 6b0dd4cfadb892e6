"""POST /servers/: pre-stream errors, SSE framing, failure paths, disconnect, concurrency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import psycopg2.extensions
import pytest

from tests.conftest import Api, Cli


def body(api: Api, **overrides: Any) -> bytes:
    data = {
        "name": "gpu-0",
        "validator": api.validator.hotkey,
        "hourly_cost": 2.5,
        "gpu_short_ref": "h200",
        "agent_api": "http://ignored",
    }
    data.update(overrides)
    return json.dumps(data).encode()


def post(api: Api, raw: bytes) -> tuple[int, list[dict[str, str]], bool]:
    """Status, parsed events, whether the chunked body ended cleanly."""
    events: list[dict[str, str]] = []
    clean = True
    with api.http.stream("POST", "/servers/", content=raw, headers=api.headers(body=raw)) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp.status_code, [resp.json()], True
        try:
            for line in resp.iter_lines():
                if line.strip():
                    assert line.startswith("data: ")
                    event = json.loads(line[6:])
                    assert set(event) == {"timestamp", "message"}
                    events.append(event)
        except httpx.RemoteProtocolError:
            clean = False
    return 200, events, clean


def settle(api: Api) -> None:
    """Wait for the background bootstraps: the stream ends before their cleanup does."""
    for thread in api.app.state.res.add_node.threads:
        thread.join(30)


def servers(db: psycopg2.extensions.connection) -> list[tuple[str, str]]:
    with db.cursor() as cur:
        cur.execute("SELECT server_id, status FROM servers")
        return list(cur.fetchall())


def test_happy_path(api: Api, db: psycopg2.extensions.connection) -> None:
    api.kube.add_node("gpu-0", "uid-0")
    status, events, clean = post(api, body(api))
    assert status == 200 and clean
    assert events[-1]["message"].startswith("completed server bootstrapping in")
    assert any("discovered 2 GPUs" in e["message"] for e in events)
    assert servers(db) == [("uid-0", "Ready")]
    assert api.kube.labels_set["gpu-0"]["gpu-short-ref"] == "h200"
    settle(api)
    assert api.kube.deleted == ["graval-gpu-0"]
    reg = api.validator.state.registered[0]
    assert reg["server_id"] == "uid-0" and reg["nodes"][1]["device_index"] == 1
    assert reg["nodes"][0]["verification_port"] == 31000
    inv = api.get("/servers/").json()[0]
    assert inv["seed"] == 42 and all(g["verified"] for g in inv["gpus"])
    # 32 CPUs, 256 GiB, 2 x 143771 MiB GPUs: min(4, 30 // 2) and min(140, (256 - 6) * 0.8 / 2)
    assert (inv["cpu_per_gpu"], inv["memory_per_gpu"], inv["gpu_count"]) == (4, 100, 2)
    assert inv["ip_address"] == "203.0.113.10" and inv["verification_port"] == 31000
    assert not api.validator.state.auth_errors


@pytest.mark.parametrize(
    ("setup", "status"),
    [
        ("unknown-validator", 400),
        ("missing-node", 404),
        ("unsupported", 400),
        ("supported-down", 502),
        ("not-ready", 400),
        ("capacity-mismatch", 400),
        ("busy", 400),
        ("long-name", 400),
        ("exists", 409),
    ],
)
def test_refused_before_stream(
    api: Api, db: psycopg2.extensions.connection, setup: str, status: int
) -> None:
    name = "n" * 57 if setup == "long-name" else "gpu-0"
    if setup != "missing-node":
        api.kube.add_node(
            name,
            "uid-0",
            ready=setup != "not-ready",
            gpu_capacity=1 if setup == "capacity-mismatch" else 2,
        )
    overrides: dict[str, Any] = {"name": name}
    if setup == "unknown-validator":
        overrides["validator"] = "5" + "A" * 47
    if setup == "unsupported":
        overrides["gpu_short_ref"] = "t4"
    if setup == "supported-down":
        api.validator.state.supported_status = 503
    if setup == "busy":
        api.kube.busy = "node already runs chute pods"
    if setup == "exists":
        with db.cursor() as cur:
            cur.execute(
                "INSERT INTO servers (server_id, validator, name, gpu_count, hourly_cost)"
                " VALUES ('uid-0', 'v', 'other', 1, 1)"
            )
    code, payload, _ = post(api, body(api, **overrides))
    assert code == status, payload
    assert isinstance(payload[0]["detail"], str)
    if setup == "exists":
        assert payload[0]["detail"] == "Server with name=gpu-0 is already provisioned!"


@pytest.mark.parametrize(
    "failure",
    ["graval", "devices-unreachable", "device-count", "register", "verification", "error"],
)
def test_failure_cleans_up(api: Api, db: psycopg2.extensions.connection, failure: str) -> None:
    api.kube.add_node("gpu-0", "uid-0")
    if failure == "graval":
        api.kube.graval_states = ["pending", "failed"]
        api.kube.graval_reason = "bootstrap pod CrashLoopBackOff"
    elif failure == "devices-unreachable":
        api.kube.devices_url = "http://127.0.0.1:1"
    elif failure == "device-count":
        api.validator.state.devices = api.validator.state.devices[:1]
    elif failure == "register":
        api.validator.state.register_status = 403
    elif failure == "verification":
        api.validator.state.statuses = ["pending", "failed"]
    else:
        api.validator.state.statuses = ["pending", "error"]
    status, events, clean = post(api, body(api))
    assert status == 200 and not clean  # aborted without the final chunk: the CLI exits non-zero
    assert events[-1]["message"].startswith("bootstrap failed: ")
    assert "Traceback" not in events[-1]["message"]
    settle(api)
    assert servers(db) == []
    assert api.kube.deleted == ["graval-gpu-0"]
    if failure in ("verification", "error"):
        assert sorted(api.validator.state.deleted) == [f"{i:032x}" for i in range(2)]
        assert "proof rejected" in events[-1]["message"]  # the validator's reason is relayed
    else:
        assert api.validator.state.deleted == []  # nothing registered, nothing to delete
    # the name is free again: a retry is possible
    assert api.get("/servers/").json() == []


def _gaps(events: list[dict[str, str]]) -> list[float]:
    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    return [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]


def test_heartbeat_while_the_bootstrap_blocks(api: Api, db: psycopg2.extensions.connection) -> None:
    """§2.4: an event at least every heartbeat (≤ 15 s) even while a single call blocks."""
    api.kube.add_node("gpu-0", "uid-0")
    api.kube.create_delay_s = 2.5  # heartbeat 0.5 s in the tests
    status, events, clean = post(api, body(api))
    assert status == 200 and clean
    assert events[-1]["message"].startswith("completed server bootstrapping in")
    assert any(e["message"].startswith("still working: ") for e in events)
    assert max(_gaps(events)) < 1.5, _gaps(events)


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_stream_ends_before_graval_cleanup(
    api: Api, db: psycopg2.extensions.connection, outcome: str
) -> None:
    """The outcome event is the last one and ends the response at once; the graval objects
    are deleted afterwards, and the node stays taken (409) until they are gone."""
    api.kube.add_node("gpu-0", "uid-0")
    api.kube.delete_delay_s = 3.0
    if outcome == "failure":
        api.validator.state.statuses = ["failed"]
    started = time.monotonic()
    status, events, clean = post(api, body(api))
    assert time.monotonic() - started < 2.5
    assert status == 200 and clean is (outcome == "success")
    last = events[-1]["message"]
    assert last.startswith("completed server" if outcome == "success" else "bootstrap failed: ")
    assert not any(e["message"].startswith("still working") for e in events[-2:])
    assert post(api, body(api))[0] == 409  # cleanup still running
    settle(api)
    assert api.kube.deleted == ["graval-gpu-0"]
    if outcome == "failure":
        api.validator.state.statuses = ["verified"]
        api.kube.delete_delay_s = 0.0
        assert post(api, body(api))[2] is True  # free again: a retry succeeds


def test_disconnect_does_not_cancel(api: Api, db: psycopg2.extensions.connection) -> None:
    api.kube.add_node("gpu-0", "uid-0")
    api.validator.state.statuses = ["pending"] * 10 + ["verified"]
    raw = body(api)
    with api.http.stream("POST", "/servers/", content=raw, headers=api.headers(body=raw)) as resp:
        assert resp.status_code == 200
        next(resp.iter_lines())  # read one event, then hang up
    for thread in api.app.state.res.add_node.threads:
        thread.join(10)
    assert servers(db) == [("uid-0", "Ready")]


def test_concurrent_add_node_keeps_winner(api: Api, db: psycopg2.extensions.connection) -> None:
    api.kube.add_node("gpu-0", "uid-0")
    api.kube.create_delay_s = 0.3
    results: list[tuple[int, list[dict[str, str]], bool]] = []

    def run() -> None:
        results.append(post(api, body(api)))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    codes = sorted(r[0] for r in results)
    assert codes == [200, 409, 409]
    assert servers(db) == [("uid-0", "Ready")]
    assert api.kube.created == ["graval-gpu-0"]


def test_real_cli_commands(
    api: Api, db: psycopg2.extensions.connection, cli_for: Callable[[str], Cli]
) -> None:
    """The real chutes-miner 0.9.0 CLI: add-node (success and failure), inventory, lock."""
    run = cli_for(api.url)
    add = ["add-node", "--validator", api.validator.hotkey, "--hourly-cost", "2.5"]
    add += ["--gpu-short-ref", "h200", "--agent-api", "http://x"]
    api.kube.add_node("gpu-0", "uid-0")
    ok = run(*add, "--name", "gpu-0")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "completed server bootstrapping" in ok.stdout
    inv = run("local-inventory", "--raw-json", "--name", "gpu-0")
    assert inv.returncode == 0 and json.loads(inv.stdout)[0]["name"] == "gpu-0"
    assert run("local-inventory").returncode == 0
    lock = run("lock", "--name", "gpu-0")
    assert lock.returncode == 0 and "lock status is now: True" in lock.stdout
    assert run("purge-server", "--name", "gpu-0").returncode == 0
    assert run("purge-deployments").returncode == 0
    assert run("delete-node", "--name", "gpu-0").returncode == 0
    api.kube.add_node("gpu-1", "uid-1")
    api.validator.state.statuses = ["failed"]
    bad = run(*add, "--name", "gpu-1")
    assert bad.returncode != 0 and "bootstrap failed" in bad.stdout
