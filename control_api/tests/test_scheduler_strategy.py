"""Strategies on synthetic snapshots (no I/O): upstream's baseline rules one by one, `fill`'s
differences, the loader's refusals, and the runner's guards (defaults on a raising or slow
hook, invalid decisions dropped); a broken strategy file stops the process at startup."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from control_api.scheduler.model import (
    ChuteMetrics,
    ChuteView,
    DeploymentView,
    JobDecision,
    JobView,
    PlacementRequest,
    Preemption,
    ScaleIntent,
    ServerView,
    Snapshot,
    Utilization,
)
from control_api.scheduler.strategies.baseline import (
    SCALE_DOWN_MIN_AGE_S,
    VICTIM_IDLE_S,
    VICTIM_MIN_VERIFIED_S,
    BaselineStrategy,
    chute_value,
    create_strategy,
    victim_value,
)
from control_api.scheduler.strategies.fill import FillStrategy
from control_api.scheduler.strategy import StrategyError, StrategyRunner, load_strategy

from tests.conftest import ServiceEnv

NOW = 1_800_000_000.0
V = "5validator"


def srv(
    sid: str, cost: float, free: int, total: int = 8, model: str = "h200", **kw: Any
) -> ServerView:
    return ServerView(
        server_id=sid,
        name=kw.pop("name", sid),
        validator=kw.pop("validator", V),
        hourly_cost=cost,
        gpu_count=total,
        model=model,
        locked=kw.pop("locked", False),
        verified_by_model={model: total},
        free_by_model={model: free},
        free_disk_gb=kw.pop("disk", None),
        ready=kw.pop("ready", True),
    )


def chute(cid: str, gpus: int = 1, models: tuple[str, ...] = ("h200",), **kw: Any) -> ChuteView:
    return ChuteView(cid, kw.pop("validator", V), "1", gpus, models, kw.pop("ban", None))


def dep(
    did: str,
    cid: str,
    sid: str,
    gpus: int = 1,
    age: float = 7200,
    verified: float | None = 7000,
    job: str | None = None,
) -> DeploymentView:
    v = None if verified is None else NOW - verified
    return DeploymentView(did, cid, sid, gpus, job, True, False, NOW - age, v)


def snap(
    servers: list[ServerView],
    chutes: list[ChuteView],
    deps: Sequence[DeploymentView] = (),
    metrics: Sequence[ChuteMetrics] = (),
    scalable: bool = True,
    rolling: tuple[str, ...] = (),
) -> Snapshot:
    util = [Utilization(c.chute_id, scalable=scalable) for c in chutes]
    return Snapshot.build(NOW, servers, chutes, deps, metrics, util, rolling)


B = BaselineStrategy()


# --- baseline: placement ------------------------------------------------------------------


def test_choose_server_cheapest_then_fewest_free() -> None:
    s = snap(
        [srv("a", 3.0, 8), srv("b", 2.0, 8), srv("c", 2.0, 2), srv("d", 1.0, 0)], [chute("x", 2)]
    )
    assert B.choose_server(s, PlacementRequest("x", 2)) == "c"
    assert B.choose_server(s, PlacementRequest("x", 3)) == "b"


@pytest.mark.parametrize(
    "server",
    [
        srv("a", 1.0, 8, locked=True),
        srv("a", 1.0, 8, validator="5other"),
        srv("a", 1.0, 8, ready=False),
        srv("a", 1.0, 8, model="h100"),
        srv("a", 1.0, 8, disk=9.0),
        srv("a", 1.0, 0),
    ],
)
def test_choose_server_skips(server: ServerView) -> None:
    s = snap([server, srv("z", 9.0, 8, disk=50.0)], [chute("x")])
    assert B.choose_server(s, PlacementRequest("x", 1, disk_gb=10)) == "z"


def test_banned_or_unknown_chute_is_never_placed() -> None:
    s = snap([srv("a", 1.0, 8)], [chute("x", ban="abuse")])
    assert B.choose_server(s, PlacementRequest("x", 1)) is None
    assert B.choose_server(s, PlacementRequest("nope", 1)) is None


# --- baseline: autoscale ------------------------------------------------------------------


def m(cid: str, **kw: Any) -> ChuteMetrics:
    base = {"total_invocations": 100.0, "total_compute_time": 1000.0, "instance_count": 2}
    return ChuteMetrics(cid, **(base | kw))


def test_value_formula() -> None:
    # cu = 1000 x 2 = 2000; rl = 50 (no /5 below 5 instances); + rl x cu / 100
    assert (
        chute_value(m("x", compute_multiplier=2.0, rate_limit_count=50)) == 2000 + 50 * 2000 / 100
    )
    assert chute_value(m("x", rate_limit_count=50, instance_count=5)) == 1000 + 10 * 1000 / 100


def test_autoscale_only_the_best_chute_per_tick() -> None:
    servers = [srv("a", 1.0, 8)]
    chutes = [chute("lo"), chute("hi"), chute("mid")]
    metrics = [m("lo"), m("hi", compute_multiplier=5.0), m("mid", compute_multiplier=2.0)]
    assert B.autoscale(snap(servers, chutes, metrics=metrics)) == [ScaleIntent("hi", 1)]


def test_autoscale_value_divides_by_cost_of_the_chosen_server() -> None:
    servers = [srv("cheap", 1.0, 1), srv("dear", 10.0, 8)]
    # "big" only fits on the dear server: 4x the compute, 10x the cost
    chutes = [chute("small", 1), chute("big", 4)]
    metrics = [m("small"), m("big", compute_multiplier=4.0)]
    assert B.autoscale(snap(servers, chutes, metrics=metrics)) == [ScaleIntent("small", 1)]


@pytest.mark.parametrize(
    "case", ["three_local", "not_scalable", "rolling", "enough_without_rate_limit", "no_room"]
)
def test_autoscale_skips(case: str) -> None:
    servers = [srv("a", 1.0, 0 if case == "no_room" else 8)]
    deps = [dep(f"d{i}", "x", "a") for i in range(3 if case == "three_local" else 0)]
    metrics = [m("x", instance_count=0 if case == "enough_without_rate_limit" else 2)]
    s = snap(
        servers,
        [chute("x")],
        deps,
        metrics,
        scalable=case != "not_scalable",
        rolling=("x",) if case == "rolling" else (),
    )
    assert B.autoscale(s) == []


def test_scale_down_rules() -> None:
    servers = [srv("a", 1.0, 4), srv("b", 5.0, 4), srv("l", 9.0, 4, locked=True)]
    deps = [
        dep("young", "x", "b", age=60),
        dep("job", "x", "b", job="j"),
        dep("locked", "x", "l"),
        dep("cheap", "x", "a"),
        dep("dear", "x", "b"),
    ]
    s = snap(servers, [chute("x")], deps)
    assert B.choose_scale_down(s, "x") == "dear"


# --- baseline: preemption -----------------------------------------------------------------


def test_victims_cheapest_value_first_and_never_jobs_or_young() -> None:
    servers = [srv("a", 1.0, 0, total=4)]
    deps = [
        dep("valuable", "v", "a"),
        dep("cheap", "c", "a"),
        dep("job", "c", "a", job="j"),
        dep("young", "c", "a", verified=600),
    ]
    metrics = [
        m("v", total_usage_usd=100.0, instance_count=2),
        m("c", total_usage_usd=1.0, instance_count=2),
    ]
    s = snap(servers, [chute("new", 1), chute("v"), chute("c")], deps, metrics)
    assert B.choose_victims(s, PlacementRequest("new", 1, allow_preempt=True)) == Preemption(
        "a", ("cheap",)
    )
    assert B.choose_victims(s, PlacementRequest("new", 2, allow_preempt=True)) == Preemption(
        "a", ("cheap", "valuable")
    )
    assert B.choose_victims(s, PlacementRequest("new", 3, allow_preempt=True)) is None


def test_sole_busy_instance_is_not_evicted_but_an_idle_one_is() -> None:
    servers = [srv("a", 1.0, 0, total=1)]
    deps = [dep("only", "o", "a")]
    busy = [m("o", instance_count=1, last_invocation_at=NOW - 60)]
    idle = [m("o", instance_count=1, last_invocation_at=NOW - 900)]
    chutes = [chute("new"), chute("o")]
    req = PlacementRequest("new", 1, allow_preempt=True)
    assert B.choose_victims(snap(servers, chutes, deps, busy), req) is None
    assert B.choose_victims(snap(servers, chutes, deps, idle), req) == Preemption("a", ("only",))


def test_preemption_gives_up_where_the_chute_already_runs_and_skips_h200() -> None:
    servers = [srv("a", 1.0, 0, total=1), srv("h", 1.0, 0, total=1, model="h200")]
    servers[0] = srv("a", 1.0, 0, total=1, model="h100")
    deps = [dep("v1", "o", "a"), dep("v2", "o", "h")]
    metrics = [m("o", instance_count=3)]
    both = chute("new", 1, ("h100", "h200"))
    req = PlacementRequest("new", 1, allow_preempt=True)
    assert B.choose_victims(snap(servers, [both, chute("o")], deps, metrics), req) == Preemption(
        "a", ("v1",)
    )  # h200 ignored while h100 is possible
    deps.append(dep("mine", "new", "a"))
    assert B.choose_victims(snap(servers, [both, chute("o")], deps, metrics), req) is None


def test_job_decision_and_bounty() -> None:
    s = snap(
        [srv("a", 1.0, 8)], [chute("big", 8, ("h200", "b200")), chute("any", 1, ("h100", "h200"))]
    )
    assert B.on_job_created(s, JobView("j", "big", 8, 1.0, 10)).allow_preempt is False
    assert B.on_job_created(s, JobView("j", "any", 1, 1.0, 10)).allow_preempt is True
    assert B.on_bounty_change(s, "any", 5.0) == PlacementRequest("any", 1, allow_preempt=True)
    assert B.on_chute_created(s, s.chutes["any"]) == 1


# --- baseline: boundaries (each rule's edge, and the figures exactly) ---------------------


def test_value_with_one_invocation_and_none() -> None:
    one = m("x", total_invocations=1.0, total_compute_time=10.0, rate_limit_count=2.0)
    assert chute_value(one) == 10.0 + 2.0 * 10.0 / 1.0
    none = m("x", total_invocations=0.0, total_compute_time=10.0, rate_limit_count=2.0)
    assert chute_value(none) == 10.0


def test_victim_value_figures() -> None:
    assert victim_value(None) == 0.0
    # (usage + rate_limit_count x usage / invocations) / instances
    for calls in (1.0, 2.0):
        busy = m("x", total_invocations=calls, total_usage_usd=10.0, rate_limit_count=2.0)
        assert victim_value(replace(busy, instance_count=4)) == (10.0 + 2.0 * 10.0 / calls) / 4
    unused = m("x", total_invocations=0.0, total_usage_usd=10.0, rate_limit_count=2.0)
    for instances in (0, 1):
        assert victim_value(replace(unused, instance_count=instances)) == 10.0


def test_scale_up_value_figure_and_a_free_server() -> None:
    # value = chute_value / (instance_count + 1) / (hourly_cost x gpu_count)
    metrics = m("x", instance_count=3, total_compute_time=1000.0, total_invocations=0.0)
    for cost, expected in ((0.5, 1000.0 / 4 / 1.0), (0.0, 1000.0 / 4 / 1e-9)):
        s = snap([srv("a", cost, 8)], [chute("x", 2)], metrics=[metrics])
        assert B._scale_up_value(s, "x", metrics) == pytest.approx(expected)


def test_autoscale_two_local_instances_may_grow_three_may_not() -> None:
    metrics = [m("x", instance_count=10)]
    two = [dep(f"d{i}", "x", "a") for i in range(2)]
    s = snap([srv("a", 1.0, 8)], [chute("x")], two, metrics)
    assert B.autoscale(s) == [ScaleIntent("x", 1)]
    three = [dep(f"d{i}", "x", "a") for i in range(3)]
    assert B.autoscale(snap([srv("a", 1.0, 8)], [chute("x")], three, metrics)) == []


def test_autoscale_ignores_metrics_of_unknown_chutes_and_keeps_the_first_of_a_tie() -> None:
    servers = [srv("a", 1.0, 8)]
    assert B.autoscale(snap(servers, [chute("x")], metrics=[m("gone")])) == []
    tie = snap(servers, [chute("first"), chute("second")], metrics=[m("first"), m("second")])
    assert B.autoscale(tie) == [ScaleIntent("first", 1)]


def test_choose_server_disk_exactly_enough() -> None:
    s = snap([srv("a", 1.0, 8, disk=10.0)], [chute("x")])
    assert B.choose_server(s, PlacementRequest("x", 1, disk_gb=10.0)) == "a"


def test_scale_down_age_boundary_and_nothing_to_remove() -> None:
    servers = [srv("a", 1.0, 4)]
    at_limit = [dep("d", "x", "a", age=SCALE_DOWN_MIN_AGE_S)]
    assert B.choose_scale_down(snap(servers, [chute("x")], at_limit), "x") is None
    older = [dep("d", "x", "a", age=SCALE_DOWN_MIN_AGE_S + 1)]
    assert B.choose_scale_down(snap(servers, [chute("x")], older), "x") == "d"
    assert B.choose_scale_down(snap(servers, [chute("x")]), "x") is None
    # Jobs and deployments on servers the snapshot does not hold are never scaled down.
    others = [dep("job", "x", "a", job="j"), dep("lost", "x", "gone")]
    assert B.choose_scale_down(snap(servers, [chute("x")], others), "x") is None


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        # cost x used / total: 1 x 1/1 = 1.0 beats 1 x 3/4 = 0.75
        ([srv("a", 1.0, 0, total=1), srv("b", 1.0, 1, total=4)], "on-a"),
        # 2 x 2/2 = 2.0 beats 1 x 1/1 = 1.0
        ([srv("a", 2.0, 0, total=2), srv("b", 1.0, 0, total=1)], "on-a"),
    ],
)
def test_scale_down_the_dearest_share_of_a_server(servers: list[ServerView], expected: str) -> None:
    deps = [dep("on-a", "x", "a"), dep("on-b", "x", "b")]
    assert B.choose_scale_down(snap(servers, [chute("x")], deps), "x") == expected


def test_victims_ranked_by_value_not_by_name() -> None:
    servers = [srv("a", 1.0, 0, total=2)]
    deps = [dep("a-valuable", "v", "a"), dep("b-cheap", "c", "a")]
    metrics = [
        m("v", total_usage_usd=100.0, instance_count=2),
        m("c", total_usage_usd=1.0, instance_count=2),
    ]
    s = snap(servers, [chute("new"), chute("v"), chute("c")], deps, metrics)
    req = PlacementRequest("new", 1, allow_preempt=True)
    assert B.choose_victims(s, req) == Preemption("a", ("b-cheap",))


def test_victim_edges_no_metrics_verified_and_idle_exactly_at_the_limit() -> None:
    servers = [srv("a", 1.0, 0, total=1)]
    chutes = [chute("new"), chute("o")]
    req = PlacementRequest("new", 1, allow_preempt=True)
    no_metrics = [dep("d", "o", "a")]
    assert B.choose_victims(snap(servers, chutes, no_metrics), req) == Preemption("a", ("d",))
    at_limit = [dep("d", "o", "a", verified=VICTIM_MIN_VERIFIED_S)]
    assert B.choose_victims(snap(servers, chutes, at_limit), req) == Preemption("a", ("d",))
    idle = [m("o", instance_count=1, last_invocation_at=NOW - VICTIM_IDLE_S)]
    assert B.choose_victims(snap(servers, chutes, no_metrics, idle), req) == Preemption("a", ("d",))


def test_preemption_drops_h200_only_when_another_model_remains() -> None:
    # The h200 server is cheaper; it is still skipped while h100 is possible.
    servers = [srv("a", 1.0, 0, total=1, model="h100"), srv("h", 0.5, 0, total=1)]
    deps = [dep("v1", "o", "a"), dep("v2", "o", "h")]
    metrics = [m("o", instance_count=3)]
    req = PlacementRequest("new", 1, allow_preempt=True)
    both = chute("new", 1, ("h100", "h200"))
    assert B.choose_victims(snap(servers, [both, chute("o")], deps, metrics), req) == Preemption(
        "a", ("v1",)
    )
    # An h200-only chute keeps h200 and never takes another model's server.
    only = chute("new", 1, ("h200",))
    a100 = [srv("x", 0.1, 0, total=1, model="a100"), servers[1]]
    deps = [dep("v1", "o", "x"), dep("v2", "o", "h")]
    assert B.choose_victims(snap(a100, [only, chute("o")], deps, metrics), req) == Preemption(
        "h", ("v2",)
    )


@pytest.mark.parametrize(
    "server",
    [
        srv("a", 1.0, 0, total=1, locked=True),
        srv("a", 1.0, 0, total=1, validator="5other"),
        srv("a", 1.0, 0, total=1, ready=False),
        srv("a", 1.0, 0, total=1, model="h100"),
    ],
)
def test_preemption_skips_servers_it_may_not_use(server: ServerView) -> None:
    s = snap([server], [chute("new"), chute("o")], [dep("d", "o", "a")], [m("o", instance_count=3)])
    assert B.choose_victims(s, PlacementRequest("new", 1, allow_preempt=True)) is None


def test_banned_or_unknown_chute_preempts_nothing() -> None:
    servers = [srv("a", 1.0, 0, total=1)]
    deps, metrics = [dep("d", "o", "a")], [m("o", instance_count=3)]
    req = PlacementRequest("new", 1, allow_preempt=True)
    banned = snap(servers, [chute("new", ban="abuse"), chute("o")], deps, metrics)
    assert B.choose_victims(banned, req) is None
    assert B.choose_victims(snap(servers, [chute("o")], deps, metrics), req) is None


def test_job_for_an_unknown_chute_and_the_factory() -> None:
    s = snap([srv("a", 1.0, 8)], [])
    assert B.on_job_created(s, JobView("j", "gone", 1, 1.0, 10)) == JobDecision(True, True)
    assert create_strategy({"k": 1}).config == {"k": 1}


# --- fill -----------------------------------------------------------------------------------


def test_fill_scales_several_chutes_per_tick_within_capacity() -> None:
    servers = [srv("a", 1.0, 3)]
    chutes = [chute("x", 2), chute("y", 2), chute("z", 1)]
    metrics = [m("x", compute_multiplier=5.0), m("y", compute_multiplier=4.0), m("z")]
    intents = FillStrategy().autoscale(snap(servers, chutes, metrics=metrics))
    assert intents == [ScaleIntent("x", 1), ScaleIntent("z", 1)]  # y no longer fits


def test_fill_prefers_an_exact_fit() -> None:
    servers = [srv("roomy", 1.0, 3), srv("exact", 1.0, 4)]
    s = snap(servers, [chute("x", 4), chute("y", 2)])
    assert FillStrategy().choose_server(s, PlacementRequest("x", 4)) == "exact"
    assert B.choose_server(s, PlacementRequest("y", 2)) == "roomy"


def test_fill_jobs_evict_only_the_less_used_half() -> None:
    servers = [srv("a", 1.0, 0, total=1), srv("b", 2.0, 0, total=1)]
    deps = [dep("busy", "hot", "a"), dep("idle", "cold", "b")]
    chutes = [chute("new"), chute("hot"), chute("cold")]
    metrics = [
        m("hot", compute_multiplier=4.0, total_compute_time=3600.0, instance_count=2),
        m("cold", total_compute_time=0.0, instance_count=2),
    ]
    req = PlacementRequest("new", 1, job_id="j", allow_preempt=True)
    s = snap(servers, chutes, deps, metrics)
    assert B.choose_victims(s, req) == Preemption("a", ("busy",))  # cheapest server first
    assert FillStrategy().choose_victims(s, req) is None  # not the busy one for a job
    s = snap(servers[1:], chutes, deps[1:] + deps[:1], metrics)
    assert FillStrategy().choose_victims(s, req) == Preemption("b", ("idle",))


def test_fill_rebalances_a_full_fleet() -> None:
    servers = [srv("a", 1.0, 0, total=8)]
    deps = [dep("quiet", "cold", "a", gpus=8, age=7200)]
    chutes = [chute("cold", 8), chute("hot", 8)]
    metrics = [
        m("cold", total_compute_time=0.0, instance_count=1, last_invocation_at=NOW - 3600),
        m("hot", instance_count=0, rate_limit_count=50.0),
    ]
    assert B.autoscale(snap(servers, chutes, deps, metrics)) == []
    assert FillStrategy().autoscale(snap(servers, chutes, deps, metrics)) == [
        ScaleIntent("cold", -1)
    ]
    assert FillStrategy().choose_scale_down(snap(servers, chutes, deps, metrics), "cold") == "quiet"
    young = [dep("quiet", "cold", "a", gpus=8, age=600)]
    assert FillStrategy().autoscale(snap(servers, chutes, young, metrics)) == []


# --- loader -------------------------------------------------------------------------------


GOOD = """
STRATEGY_API_VERSION = 1

class Mine:
    def __init__(self, config):
        self.pick = config.get("pick")

    def choose_server(self, snap, req):
        return self.pick

def create_strategy(config):
    return Mine(config)
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "strategy.py"
    path.write_text(text)
    return str(path)


def test_loads_a_file_and_a_module_path(tmp_path: Path) -> None:
    mine = load_strategy(write(tmp_path, GOOD), {"pick": "a"})
    assert mine.pick == "a" and not hasattr(mine, "autoscale")
    assert isinstance(load_strategy("control_api.scheduler.strategies.fill"), FillStrategy)
    assert isinstance(load_strategy(""), BaselineStrategy)


@pytest.mark.parametrize(
    ("text", "english"),
    [
        ("def broken(:\n", "failed to import: SyntaxError"),
        ("STRATEGY_API_VERSION = 2\ndef create_strategy(c): return 1\n", "must be 1, found 2"),
        ("STRATEGY_API_VERSION = 1\n", "defines no create_strategy"),
        (
            "STRATEGY_API_VERSION = 1\ndef create_strategy(c): raise KeyError('x')\n",
            "create_strategy failed: KeyError",
        ),
        (
            "STRATEGY_API_VERSION = 1\ndef create_strategy(c): return object()\n",
            "none of the hooks",
        ),
        (
            "STRATEGY_API_VERSION = 1\nclass S:\n  autoscale = 3\n"
            "  def choose_server(s, a, b): pass\ndef create_strategy(c): return S()\n",
            "autoscale is not callable",
        ),
        ("import no_such_module_here\n", "ModuleNotFoundError"),
    ],
)
def test_broken_strategies_are_refused(tmp_path: Path, text: str, english: str) -> None:
    with pytest.raises(StrategyError) as err:
        load_strategy(write(tmp_path, text))
    assert english in str(err.value) and "策略" in str(err.value)


def test_missing_file_and_module() -> None:
    with pytest.raises(StrategyError, match="file not found"):
        load_strategy("/nonexistent/strategy.py")
    with pytest.raises(StrategyError, match="failed to import"):
        load_strategy("control_api.no_such_strategy")


# --- runner -------------------------------------------------------------------------------


class Misbehaving:
    name = "misbehaving"

    def choose_server(self, snap: Snapshot, req: PlacementRequest) -> Any:
        raise RuntimeError("boom")

    def autoscale(self, snap: Snapshot) -> Any:
        time.sleep(1.0)
        return []

    def on_chute_created(self, snap: Snapshot, chute: ChuteView) -> Any:
        return True  # not an int

    def choose_victims(self, snap: Snapshot, req: PlacementRequest) -> Any:
        return Preemption("a", ("job",))  # names a job

    def choose_scale_down(self, snap: Snapshot, chute_id: str) -> Any:
        return "not-a-deployment"

    async def on_bounty_change(self, snap: Snapshot, chute_id: str, bounty: float) -> Any:
        await asyncio.sleep(0)
        return PlacementRequest(chute_id, 3)


def test_runner_guards() -> None:
    s = snap(
        [srv("a", 1.0, 8)],
        [chute("x"), chute("o")],
        [dep("job", "o", "a", job="j"), dep("d", "x", "a")],
        [m("x")],
    )
    runner = StrategyRunner(Misbehaving(), timeout_s=0.2)
    try:
        assert runner.choose_server(s, PlacementRequest("x", 1)) == "a"  # baseline's answer
        started = time.monotonic()
        assert runner.autoscale(s) == B.autoscale(s)  # too slow: baseline's answer
        assert time.monotonic() - started < 0.9
        assert runner.on_chute_created(s, s.chutes["x"]) == 0  # invalid: dropped
        assert runner.choose_victims(s, PlacementRequest("x", 1, allow_preempt=True)) is None
        assert runner.choose_scale_down(s, "x") is None
        assert runner.on_bounty_change(s, "x", 1.0) == PlacementRequest("x", 3)  # async hook
        assert runner.on_job_created(s, JobView("j", "x", 1, 1.0, 10)).accept  # baseline's
        assert runner.failures == 2
    finally:
        runner.close()


def test_runner_drops_invalid_intents() -> None:
    class Intents:
        def autoscale(self, snap: Snapshot) -> Any:
            return [
                ScaleIntent("x", 1),
                ScaleIntent("x", 1),
                ScaleIntent("nope", 1),
                ScaleIntent("x", 5),
                "junk",
            ]

    runner = StrategyRunner(Intents(), enforce_timeout=False)
    assert runner.autoscale(snap([srv("a", 1.0, 8)], [chute("x")])) == [ScaleIntent("x", 1)]


# --- process ------------------------------------------------------------------------------


def test_broken_strategy_stops_startup(tmp_path: Path, service_env: ServiceEnv) -> None:
    """Exit 3 with the reason in English and Chinese, before any connection is made (the
    database here does not exist and Redis is not asked)."""
    path = write(tmp_path, "def broken(:\n")
    env = service_env(GEPETTO_STRATEGY_FILE=path, PATH="/usr/bin:/bin")
    done = subprocess.run(
        [sys.executable, "-m", "control_api", "scheduler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert f"strategy {path}: failed to import: SyntaxError" in done.stderr
    assert "导入失败" in done.stderr


def test_check_strategy_command(tmp_path: Path) -> None:
    def run(spec: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "control_api", "scheduler", "check-strategy", spec],
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = run(write(tmp_path, GOOD))
    assert ok.returncode == 0 and "choose_server (own): None" in ok.stdout
    assert "autoscale (baseline):" in ok.stdout
    raising = write(
        tmp_path,
        "STRATEGY_API_VERSION = 1\nclass S:\n  def autoscale(self, snap): raise ValueError('x')\n"
        "def create_strategy(c): return S()\n",
    )
    bad = run(raising)
    assert bad.returncode == 1 and "FAILED: 1 problem(s)" in bad.stdout
    assert run(str(tmp_path / "missing.py")).returncode == 1
