"""`check-strategy FILE`: load a strategy offline and call each hook once on a small synthetic
snapshot (two servers, three chutes, one old deployment), so an operator sees what each hook
answers, whether one raises, is too slow or returns something invalid, before deploying it."""

from __future__ import annotations

import logging
from typing import Any

from control_api.scheduler.model import (
    ChuteMetrics,
    ChuteView,
    DeploymentView,
    JobView,
    PlacementRequest,
    ServerView,
    Snapshot,
    Utilization,
)
from control_api.scheduler.strategy import HOOKS, StrategyRunner, load_strategy

NOW = 1_800_000_000.0
V = "5validator"


def synthetic_snapshot() -> Snapshot:
    servers = [
        ServerView("s-a", "gpu-a", V, 2.0, 8, "h100", False, {"h100": 8}, {"h100": 6}, 500.0),
        ServerView("s-b", "gpu-b", V, 3.0, 8, "h200", False, {"h200": 8}, {"h200": 8}, 500.0),
    ]
    chutes = [
        ChuteView("llm", V, "1", 2, ("h100", "h200")),
        ChuteView("big", V, "1", 8, ("h200",)),
        ChuteView("small", V, "1", 1, ("h100",)),
    ]
    deps = [DeploymentView("d-old", "small", "s-a", 2, None, True, False, NOW - 7200, NOW - 7000)]
    metrics = [
        ChuteMetrics("llm", 4.0, 1000, 5000, 20, 2, 50.0, NOW - 10),
        ChuteMetrics("big", 8.0, 100, 9000, 0, 1, 80.0, NOW - 10),
        ChuteMetrics("small", 1.0, 10, 100, 0, 3, 1.0, NOW - 3600),
    ]
    util = [Utilization(c.chute_id) for c in chutes]
    return Snapshot.build(NOW, servers, chutes, deps, metrics, util)


def hook_answers(strategy: Any, timeout_s: float = 5.0) -> tuple[dict[str, Any], list[str]]:
    """Each hook's validated answer on the synthetic snapshot, and one line per problem (a
    hook that raised, ran past `timeout_s` or answered something invalid)."""
    runner = StrategyRunner(strategy, timeout_s=timeout_s, enforce_timeout=True)
    snap = synthetic_snapshot()
    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(f"  ! {record.getMessage()}: {getattr(record, 'error', '')}")

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("control_api.scheduler.strategy")
    logger.addHandler(handler)
    try:
        req = PlacementRequest("llm", 2)
        big = PlacementRequest("big", 8, allow_preempt=True)
        answers = {
            "autoscale": runner.autoscale(snap),
            "choose_server": runner.choose_server(snap, req),
            "choose_victims": runner.choose_victims(snap, big),
            "choose_scale_down": runner.choose_scale_down(snap, "small"),
            "on_chute_created": runner.on_chute_created(snap, snap.chutes["llm"]),
            "on_bounty_change": runner.on_bounty_change(snap, "big", 100.0),
            "on_job_created": runner.on_job_created(snap, JobView("j1", "big", 8, 8.0, 10)),
        }
    finally:
        logger.removeHandler(handler)
        runner.close()
    return answers, warnings


def exercise(spec: str, config: dict[str, Any]) -> list[str]:
    """One line per hook: its (validated) answer. Raises StrategyError if it does not load."""
    strategy = load_strategy(spec, config)
    answers, warnings = hook_answers(strategy)
    own = [h for h in HOOKS if callable(getattr(strategy, h, None))]
    lines = [f"strategy {spec}: loaded; defines {', '.join(own) or 'no hooks'}"]
    for hook in HOOKS:
        origin = "own" if hook in own else "baseline"
        lines.append(f"{hook} ({origin}): {answers[hook]!r}")
    lines += warnings
    lines.append(f"{'FAILED' if warnings else 'OK'}: {len(warnings)} problem(s)")
    return lines
