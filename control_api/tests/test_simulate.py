"""The simulator: deterministic for a seed, the PostgreSQL store agrees with the in-memory one
(the same claim rules), a strategy's failures are counted and replaced, fill's rebalance
beats the baseline where an instance's chute goes quiet, and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
from control_api.clients.events import EventPublisher
from control_api.scheduler.strategies.baseline import BaselineStrategy
from control_api.scheduler.strategies.fill import FillStrategy
from control_api.scheduler.strategy import StrategyRunner
from control_api.simulate.engine import MemoryStore, simulate
from control_api.simulate.pgstore import PgStore
from control_api.simulate.record import record
from control_api.simulate.scenario import Scenario, load

from tests.conftest import REDIS_URL
from tests.seed import add_chute, add_server

QUIET = {
    "name": "quiet",
    "duration_h": 6,
    "price_per_unit_hour": 1.0,
    "servers": [{"count": 1, "model": "h200", "gpus": 8, "hourly_cost": 2.0}],
    "events": [
        {"t": 0, "kind": "chute_created",
         "data": {"chute_id": "a", "gpu_count": 8, "supported_gpus": ["h200"], "multiplier": 2.0}},
        {"t": 0, "kind": "demand", "data": {"chute_id": "a", "demand": 2, "others": 0}},
        {"t": 3600, "kind": "demand", "data": {"chute_id": "a", "demand": 0, "others": 0}},
        {"t": 3700, "kind": "chute_created",
         "data": {"chute_id": "b", "gpu_count": 8, "supported_gpus": ["h200"], "multiplier": 3.0}},
        {"t": 3700, "kind": "demand", "data": {"chute_id": "b", "demand": 3, "others": 0}},
    ],
}  # fmt: skip


def run(scenario: Scenario, strategy: Any, store: Any = None) -> dict[str, Any]:
    runner = StrategyRunner(strategy, enforce_timeout=False)
    return simulate(scenario, runner, store or MemoryStore()).summary()


def small(seed: int) -> Scenario:
    sc = load("bursty", seed)
    sc.duration_s = 4 * 3600  # the first four hours are enough here
    return sc


def test_same_seed_same_result_different_seed_different_day() -> None:
    assert run(small(3), BaselineStrategy()) == run(small(3), BaselineStrategy())
    assert run(small(3), BaselineStrategy()) != run(small(4), BaselineStrategy())


def test_postgresql_store_agrees_with_memory(fresh_db: Callable[[], str]) -> None:
    store = PgStore(fresh_db())
    try:
        for strategy in (BaselineStrategy(), FillStrategy()):
            on_pg = run(small(2), strategy, store)
            in_memory = run(small(2), strategy)
            assert {**on_pg, "store": "memory"} == {**in_memory, "store": "memory"}
            assert on_pg["deployments"] > 10
    finally:
        store.close()


def test_rebalance_moves_gpus_from_a_quiet_chute(tmp_path: Path) -> None:
    path = tmp_path / "quiet.json"
    path.write_text(json.dumps(QUIET))
    base = run(load(str(path), 1), BaselineStrategy())
    fill = run(load(str(path), 1), FillStrategy({"rebalance_min_age_s": 1800}))
    # the baseline keeps the idle chute on the only server for the remaining 5 h
    assert base["deployments"] == 1 and base["earnings_usd"] < 2.1 * 1.0
    assert fill["deployments"] == 2 and fill["earnings_usd"] > base["earnings_usd"] + 5
    assert fill["utilisation_pct"] <= base["utilisation_pct"]  # one redeploy's start-up


class Raising(BaselineStrategy):
    def autoscale(self, snap: Any) -> Any:
        raise RuntimeError("bug")


def test_a_raising_strategy_is_counted_and_replaced() -> None:
    result = run(small(1), Raising())
    assert result["hook_failures"] > 100
    assert result == {**run(small(1), BaselineStrategy()), "hook_failures": result["hook_failures"]}


def test_command_line(tmp_path: Path) -> None:
    out, chart = tmp_path / "r.json", tmp_path / "r.svg"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    cmd = [sys.executable, "-m", "control_api.simulate", "--scenario", "steady", "--seeds", "1"]
    done = subprocess.run(
        [*cmd, "--json", str(out), "--svg", str(chart)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "estimated earnings $" in done.stdout and "fill" in done.stdout
    results = json.loads(out.read_text())["steady"]
    assert [r["strategy"] for r in results] == ["baseline", "fill"]
    assert chart.read_text().startswith("<svg") and "GPU utilisation" in chart.read_text()
    again = subprocess.run(
        [*cmd, "--json", str(tmp_path / "again.json")],
        env={**env, "PYTHONHASHSEED": "7"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert json.loads((tmp_path / "again.json").read_text()) == {"steady": results}
    bad = subprocess.run(
        [sys.executable, "-m", "control_api.simulate", "--scenario", "nope"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "no scenario 'nope'" in bad.stderr and "steady" in bad.stderr
    assert again.returncode == 0


@pytest.mark.parametrize("name", ["steady", "bursty"])
def test_shipped_scenarios_load(name: str) -> None:
    sc = load(name, 1)
    assert sc.servers and sc.events and sc.duration_s == 24 * 3600
    kinds = {e.kind for e in sc.events}
    assert kinds == {"chute_created", "demand", "bounty_change", "job_created"}


def test_record_a_trace_and_replay_it(
    db: psycopg2.extensions.connection, database_dsn: str, redis_prefix: str
) -> None:
    add_server(db, "s1", gpus=8)
    add_chute(db, "old", gpu_count=2)
    add_chute(db, "new", gpu_count=4)
    publisher = EventPublisher(redis.Redis.from_url(REDIS_URL), redis_prefix)
    publisher.publish("chute_created", {"chute_id": "new", "version": "1"})
    publisher.publish("bounty_change", {"chute_id": "new", "bounty": 5})
    publisher.publish("job_created", {"job_id": "j", "chute_id": "old", "excluded": ["5x"]})
    trace = record(database_dsn, REDIS_URL, 3.0, 2.0, 1, prefix=redis_prefix)
    assert trace["servers"] == [{"count": 1, "model": "h200", "gpus": 8, "hourly_cost": 2.0}]
    kinds = [(e["kind"], e["data"]["chute_id"]) for e in trace["events"]]
    assert kinds == [
        ("chute_created", "old"), ("demand", "old"), ("chute_created", "new"),
        ("demand", "new"), ("bounty_change", "new"), ("job_created", "old"),
    ]  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "trace.json"
    path.write_text(json.dumps(trace))
    result = run(load(str(path), 1), BaselineStrategy())
    assert result["jobs_run"] == "1/1" and result["deployments"] >= 2
