"""The simulator's engine: replays a scenario against a strategy, through the same
`StrategyRunner` (validation, defaults) the scheduler uses and the same claim rules, in
simulated time, and measures what the operator cares about.

Model (deliberately simple, the same for every strategy compared):
- An instance costs `startup_s` (uniform in the scenario's range, seeded per placement) from
  claim to active; it holds its GPUs from the claim on.
- A chute with demand D (instances' worth of work) shared by N active instances network-wide
  (other miners' plus ours) keeps each busy min(1, D / N) of the time; a busy instance earns
  its chute's multiplier x `price_per_unit_hour` per hour. A job earns its multiplier x the
  price for its duration, once active, then ends.
- A bounty goes to the first instance to come up: ours if it is active before a competitor's
  (after `competitor_delay_s`, seeded).
- The metrics a strategy sees are derived from that model (instance counts, compute time,
  rate-limited demand, usage), so "value" means the same thing it means on the network.

Claims go through a store: `MemoryStore` (the claim rules of control_api/db/claims.py on
dicts) or `PgStore` (a scratch PostgreSQL database, the real claim code and snapshot read).
"""

from __future__ import annotations

import heapq
import random
import statistics
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from control_api.db.claims import ClaimRefused
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
from control_api.scheduler.strategy import StrategyRunner
from control_api.simulate.scenario import SIM_VALIDATOR, Scenario, ServerSpec

AUTOSCALE_S = 15.0
MINER = "5us"


class Store(Protocol):
    def reset(self, servers: list[ServerSpec]) -> None: ...

    def add_chute(self, chute: ChuteView) -> None: ...

    def claim(self, chute_id: str, server_id: str, job_id: str | None, dep_id: str) -> int:
        """Claim for deployment `dep_id`; the GPUs it holds. Raises ClaimRefused."""
        ...

    def release(self, deployment_id: str) -> None: ...

    def state(self) -> tuple[list[ServerView], list[ChuteView], set[str]]:
        """Servers with free GPUs, chutes, and the deployment ids that exist."""
        ...


class MemoryStore:
    """The claim rules on dicts: unlocked server of the chute's validator, free verified GPUs
    of a supported model, exactly gpu_count of them, or refused with nothing changed."""

    def __init__(self) -> None:
        self.servers: dict[str, ServerSpec] = {}
        self.free: dict[str, int] = {}
        self.chutes: dict[str, ChuteView] = {}
        self.held: dict[str, tuple[str, int]] = {}

    def reset(self, servers: list[ServerSpec]) -> None:
        self.servers = {s.server_id: s for s in servers}
        self.free = {s.server_id: s.gpus for s in servers}
        self.chutes, self.held = {}, {}

    def add_chute(self, chute: ChuteView) -> None:
        self.chutes[chute.chute_id] = chute

    def claim(self, chute_id: str, server_id: str, job_id: str | None, dep_id: str) -> int:
        server, chute = self.servers.get(server_id), self.chutes.get(chute_id)
        if server is None:
            raise ClaimRefused("server_missing", server_id)
        if chute is None:
            raise ClaimRefused("chute_missing", chute_id)
        if chute.supported_gpus and server.model not in chute.supported_gpus:
            raise ClaimRefused("not_enough_gpus", "model")
        if self.free[server_id] < chute.gpu_count:
            raise ClaimRefused("not_enough_gpus", server_id)
        self.free[server_id] -= chute.gpu_count
        self.held[dep_id] = (server_id, chute.gpu_count)
        return chute.gpu_count

    def release(self, deployment_id: str) -> None:
        server_id, n = self.held.pop(deployment_id)
        self.free[server_id] += n

    def state(self) -> tuple[list[ServerView], list[ChuteView], set[str]]:
        servers = [
            ServerView(
                s.server_id,
                s.server_id,
                SIM_VALIDATOR,
                s.hourly_cost,
                s.gpus,
                s.model,
                False,
                {s.model: s.gpus},
                {s.model: self.free[s.server_id]},
            )  # fmt: skip
            for s in self.servers.values()
        ]
        return servers, list(self.chutes.values()), set(self.held)


@dataclass
class Dep:
    deployment_id: str
    chute_id: str
    server_id: str
    gpus: int
    job_id: str | None
    claimed_at: float
    active_at: float
    trigger_at: float | None  # the event that asked for it (latency), None for autoscale
    active: bool = False
    ends_at: float | None = None  # jobs


@dataclass
class Results:
    strategy: str
    scenario: str
    seed: int
    store: str
    gpu_hours_available: float = 0.0
    gpu_hours_claimed: float = 0.0
    gpu_hours_active: float = 0.0
    earnings: float = 0.0
    bounty_earnings: float = 0.0
    job_earnings: float = 0.0
    server_cost: float = 0.0
    bounties_won: int = 0
    bounties_tried: int = 0
    jobs_offered: int = 0
    jobs_run: int = 0
    preemptions: int = 0
    deployments: int = 0
    latencies_s: list[float] = field(default_factory=list)
    hook_failures: int = 0

    @property
    def utilisation(self) -> float:
        return (
            self.gpu_hours_claimed / self.gpu_hours_available if self.gpu_hours_available else 0.0
        )

    @property
    def net(self) -> float:
        return self.earnings - self.server_cost

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        return {
            "strategy": self.strategy,
            "scenario": self.scenario,
            "seed": self.seed,
            "store": self.store,
            "gpu_hours_used": round(self.gpu_hours_claimed, 1),
            "gpu_hours_busy": round(self.gpu_hours_active, 1),
            "utilisation_pct": round(100 * self.utilisation, 1),
            "earnings_usd": round(self.earnings, 2),
            "of_which_jobs_usd": round(self.job_earnings, 2),
            "of_which_bounties_usd": round(self.bounty_earnings, 2),
            "server_cost_usd": round(self.server_cost, 2),
            "net_usd": round(self.net, 2),
            "bounties_won": f"{self.bounties_won}/{self.bounties_tried}",
            "jobs_run": f"{self.jobs_run}/{self.jobs_offered}",
            "preemptions": self.preemptions,
            "deployments": self.deployments,
            "deploy_latency_p50_s": round(statistics.median(lat), 1) if lat else None,
            "deploy_latency_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
            "hook_failures": self.hook_failures,
        }


@dataclass
class ChuteState:
    view: ChuteView
    multiplier: float
    demand: float = 0.0
    others: int = 0
    idle_since: float = 0.0


class Simulation:
    def __init__(
        self, scenario: Scenario, runner: StrategyRunner, store: Store, store_name: str
    ) -> None:
        self.sc = scenario
        self.runner = runner
        self.store = store
        self.rng = random.Random(scenario.seed * 1_000_003 + 17)
        self.now = 0.0
        self.chutes: dict[str, ChuteState] = {}
        self.deps: dict[str, Dep] = {}
        self.queue: list[tuple[float, int, str, dict[str, Any]]] = []
        self._seq = 0
        self._ids = 0
        self.bounties: dict[str, tuple[float, float, float]] = {}  # chute -> (amount, at, rival)
        self.r = Results(runner.name, scenario.name, scenario.seed, store_name)

    # time ----------------------------------------------------------------------------------

    def _push(self, t: float, kind: str, data: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (t, self._seq, kind, data))

    def _advance(self, t: float) -> None:
        dt_h = (t - self.now) / 3600
        if dt_h <= 0:
            return
        price = self.sc.price_per_unit_hour
        ours: dict[str, int] = {}
        for d in self.deps.values():
            self.r.gpu_hours_claimed += d.gpus * dt_h
            if d.active:
                self.r.gpu_hours_active += d.gpus * dt_h
                if d.job_id is None:
                    ours[d.chute_id] = ours.get(d.chute_id, 0) + 1
        for cid, n in ours.items():
            c = self.chutes[cid]
            total = n + c.others
            busy = min(1.0, c.demand / total) if total else 0.0
            self.r.earnings += n * c.multiplier * busy * price * dt_h
        self.now = t

    # snapshot ------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        servers, chutes, existing = self.store.state()
        deps = [
            DeploymentView(
                d.deployment_id,
                d.chute_id,
                d.server_id,
                d.gpus,
                d.job_id,
                d.active,
                not d.active,
                d.claimed_at,
                d.active_at if d.active else None,
            )  # fmt: skip
            for d in self.deps.values()
            if d.deployment_id in existing
        ]
        metrics, util = [], []
        for cid, c in self.chutes.items():
            ours = sum(
                1 for d in self.deps.values() if d.chute_id == cid and d.active and not d.job_id
            )
            n = ours + c.others
            served = min(c.demand, n)
            metrics.append(
                ChuteMetrics(
                    cid,
                    compute_multiplier=c.multiplier,
                    total_invocations=c.demand * 1000,
                    total_compute_time=served * 3600,
                    rate_limit_count=max(0.0, c.demand - n) * 100,
                    instance_count=n,
                    total_usage_usd=served * c.multiplier * self.sc.price_per_unit_hour,
                    last_invocation_at=self.now if c.demand > 0 else c.idle_since,
                )
            )
            util.append(Utilization(cid))
        return Snapshot.build(self.now, servers, chutes, deps, metrics, util)

    # actions -------------------------------------------------------------------------------

    def place(self, req: PlacementRequest, trigger_at: float | None) -> Dep | None:
        snap = self.snapshot()
        server_id = self.runner.choose_server(snap, req)
        if server_id is None and req.allow_preempt:
            pre = self.runner.choose_victims(snap, req)
            if pre is not None:
                for victim in pre.deployment_ids:
                    if victim in self.deps and self.deps[victim].job_id is None:
                        self.undeploy(victim)
                        self.r.preemptions += 1
                server_id = pre.server_id
        if server_id is None:
            return None
        self._ids += 1
        dep_id = str(uuid.UUID(int=self._ids))  # deterministic: ties break the same way
        try:
            gpus = self.store.claim(req.chute_id, server_id, req.job_id, dep_id)
        except ClaimRefused:
            return None
        lo, hi = self.sc.startup_s
        d = Dep(dep_id, req.chute_id, server_id, gpus, req.job_id, self.now,
                self.now + self.rng.uniform(lo, hi), trigger_at)  # fmt: skip
        self.deps[dep_id] = d
        self.r.deployments += 1
        self._push(d.active_at, "active", {"deployment_id": dep_id})
        return d

    def undeploy(self, deployment_id: str) -> None:
        d = self.deps.pop(deployment_id, None)
        if d is not None:
            self.store.release(deployment_id)

    # events --------------------------------------------------------------------------------

    def on_chute_created(self, data: dict[str, Any]) -> None:
        view = ChuteView(data["chute_id"], SIM_VALIDATOR, "1", int(data["gpu_count"]),
                         tuple(data.get("supported_gpus", ())))  # fmt: skip
        self.store.add_chute(view)
        self.chutes[view.chute_id] = ChuteState(
            view, float(data.get("multiplier", 1.0)), idle_since=self.now
        )
        wanted = self.runner.on_chute_created(self.snapshot(), view)
        for _ in range(wanted):
            if self.place(PlacementRequest(view.chute_id, view.gpu_count), self.now) is None:
                break

    def on_demand(self, data: dict[str, Any]) -> None:
        c = self.chutes.get(data["chute_id"])
        if c is None:
            return
        if c.demand > 0 and float(data["demand"]) <= 0:
            c.idle_since = self.now
        c.demand, c.others = float(data["demand"]), int(data["others"])

    def on_bounty_change(self, data: dict[str, Any]) -> None:
        cid = data["chute_id"]
        if cid not in self.chutes or any(d.chute_id == cid for d in self.deps.values()):
            return
        self.r.bounties_tried += 1
        lo, hi = self.sc.competitor_delay_s
        rival = self.now + self.rng.uniform(lo, hi)
        self.bounties[cid] = (float(data["bounty"]), self.now, rival)
        req = self.runner.on_bounty_change(self.snapshot(), cid, float(data["bounty"]))
        if req is not None:
            self.place(req, self.now)

    def on_job_created(self, data: dict[str, Any]) -> None:
        self.r.jobs_offered += 1
        cid = data["chute_id"]
        if MINER in data.get("exclude", []) or cid not in self.chutes:
            return
        snap = self.snapshot()
        job = JobView(
            data["job_id"], cid, int(data["gpu_count"]), float(data["compute_multiplier"]), 10.0
        )
        decision = self.runner.on_job_created(snap, job)
        if not decision.accept:
            return
        req = PlacementRequest(cid, job.gpu_count, 10.0, job.job_id, decision.allow_preempt)
        d = self.place(req, self.now)
        if d is not None:
            d.ends_at = d.active_at + float(data["duration_s"])
            self._push(
                d.ends_at,
                "job_done",
                {"deployment_id": d.deployment_id, "m": job.compute_multiplier},
            )

    def on_active(self, data: dict[str, Any]) -> None:
        d = self.deps.get(data["deployment_id"])
        if d is None or d.active:
            return
        d.active = True
        if d.trigger_at is not None:
            self.r.latencies_s.append(self.now - d.trigger_at)
        bounty = self.bounties.pop(d.chute_id, None)
        if bounty is not None and d.job_id is None and self.now <= bounty[2]:
            self.r.bounties_won += 1
            self.r.bounty_earnings += bounty[0]
            self.r.earnings += bounty[0]

    def on_job_done(self, data: dict[str, Any]) -> None:
        d = self.deps.get(data["deployment_id"])
        if d is None:
            return  # preempted jobs cannot happen (never victims); gone otherwise
        hours = (self.now - d.active_at) / 3600
        pay = float(data["m"]) * self.sc.price_per_unit_hour * hours
        self.r.jobs_run += 1
        self.r.job_earnings += pay
        self.r.earnings += pay
        self.undeploy(d.deployment_id)

    def on_tick(self, data: dict[str, Any]) -> None:
        snap = self.snapshot()
        for intent in self.runner.autoscale(snap):
            chute = self.chutes.get(intent.chute_id)
            if chute is None:
                continue
            if intent.delta > 0:
                self.place(PlacementRequest(intent.chute_id, chute.view.gpu_count), None)
            else:
                victim = self.runner.choose_scale_down(self.snapshot(), intent.chute_id)
                if victim is not None:
                    self.undeploy(victim)
        if self.now + AUTOSCALE_S < self.sc.duration_s:
            self._push(self.now + AUTOSCALE_S, "tick", {})

    def run(self) -> Results:
        self.store.reset(self.sc.servers)
        for e in self.sc.events:
            self._push(e.t, e.kind, e.data)
        self._push(AUTOSCALE_S, "tick", {})
        handlers = {
            "chute_created": self.on_chute_created,
            "demand": self.on_demand,
            "bounty_change": self.on_bounty_change,
            "job_created": self.on_job_created,
            "active": self.on_active,
            "job_done": self.on_job_done,
            "tick": self.on_tick,
        }
        while self.queue and self.queue[0][0] <= self.sc.duration_s:
            t, _, kind, data = heapq.heappop(self.queue)
            self._advance(t)
            handlers[kind](data)
        self._advance(self.sc.duration_s)
        hours = self.sc.duration_s / 3600
        total_gpus = sum(s.gpus for s in self.sc.servers)
        self.r.gpu_hours_available = total_gpus * hours
        self.r.server_cost = sum(s.gpus * s.hourly_cost for s in self.sc.servers) * hours
        self.r.hook_failures = self.runner.failures
        return self.r


def simulate(
    scenario: Scenario,
    runner: StrategyRunner,
    store: Store | None = None,
    store_name: str = "memory",
) -> Results:
    return Simulation(scenario, runner, store or MemoryStore(), store_name).run()
