"""Upstream's gepetto strategy (rayonlabs/chutes-miner), the baseline to beat, with upstream's
defects fixed: only verified GPUs count as capacity, locked servers are never chosen, a chute
runs only on a server of its own validator.

- autoscale: chutes with metrics, fewer than 3 local non-job instances, `scalable` and not
  updating, not rolling, skipped when local >= network `instance_count` without rate limiting;
  value = (cu + rl * cu / invocations) / (instance_count + 1) / (hourly_cost x gpu_count) on
  the server `choose_server` would pick, where cu = compute time x compute multiplier and
  rl = rate-limit count (/5 from 5 instances on); only the best chute gets +1 per tick.
- choose_server: unlocked servers of the chute's validator with >= gpu_count free verified
  GPUs of a supported model, cheapest first, then fewest free GPUs; the first with the disk.
- choose_scale_down: non-job, > 5 min old, on an unlocked server; highest
  hourly_cost x used/total first.
- choose_victims: drop h200 from the models when others remain; servers with enough verified
  supported GPUs in total, same order; give up when such a server already runs the chute;
  victims by ascending value per instance, never jobs, never unverified or < 60 min verified,
  only when the victim's chute has > 1 instance network-wide or no invocation for 10 min.
- on_chute_created: 1; on_bounty_change: one instance, preemption allowed;
  on_job_created: accept, preempt unless only h200/b200 are supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_api.scheduler.model import (
    ChuteMetrics,
    ChuteView,
    JobDecision,
    JobView,
    PlacementRequest,
    Preemption,
    ScaleIntent,
    ServerView,
    Snapshot,
)

STRATEGY_API_VERSION = 1
MAX_LOCAL_INSTANCES = 3
SCALE_DOWN_MIN_AGE_S = 300.0
VICTIM_MIN_VERIFIED_S = 3600.0
VICTIM_IDLE_S = 600.0
PREEMPT_ONLY_MODELS = frozenset({"h200", "b200"})


def candidate_models(chute: ChuteView) -> tuple[str, ...]:
    return chute.supported_gpus


def chute_value(metrics: ChuteMetrics) -> float:
    """Upstream's demand figure before it is divided by instances and cost."""
    cu = metrics.total_compute_time * metrics.compute_multiplier
    rl = metrics.rate_limit_count
    if metrics.instance_count >= 5:
        rl /= 5
    if metrics.total_invocations > 0:
        return cu + rl * cu / metrics.total_invocations
    return cu


def victim_value(metrics: ChuteMetrics | None) -> float:
    """Value of one instance of a chute: its usage plus rate-limited demand, per instance."""
    if metrics is None:
        return 0.0
    usage = metrics.total_usage_usd
    if metrics.total_invocations > 0:
        usage += metrics.rate_limit_count * metrics.total_usage_usd / metrics.total_invocations
    return usage / max(1, metrics.instance_count)


class BaselineStrategy:
    """Every hook of the contract, as upstream decides."""

    name = "baseline"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    # placement ---------------------------------------------------------------------------

    def _candidates(self, snap: Snapshot, chute: ChuteView, gpu_count: int) -> list[ServerView]:
        models = candidate_models(chute)
        out = [
            s
            for s in snap.servers.values()
            if not s.locked
            and s.ready
            and s.validator == chute.validator
            and s.free_for(models) >= gpu_count
        ]
        out.sort(key=lambda s: (s.hourly_cost, s.free_for(models), s.name))
        return out

    def choose_server(self, snap: Snapshot, req: PlacementRequest) -> str | None:
        chute = snap.chutes.get(req.chute_id)
        if chute is None or chute.ban_reason:
            return None
        for server in self._candidates(snap, chute, req.gpu_count):
            if server.free_disk_gb is None or server.free_disk_gb >= req.disk_gb:
                return server.server_id
        return None

    # autoscale ---------------------------------------------------------------------------

    def autoscale(self, snap: Snapshot) -> list[ScaleIntent]:
        best: tuple[float, str] | None = None
        for chute_id, metrics in snap.metrics.items():
            value = self._scale_up_value(snap, chute_id, metrics)
            if value is not None and (best is None or value > best[0]):
                best = (value, chute_id)
        return [] if best is None else [ScaleIntent(best[1], 1)]

    def _scale_up_value(self, snap: Snapshot, chute_id: str, metrics: ChuteMetrics) -> float | None:
        chute = snap.chutes.get(chute_id)
        if chute is None or chute.ban_reason or chute_id in snap.rolling_updates:
            return None
        util = snap.utilization.get(chute_id)
        if util is None or not util.scalable or util.update_in_progress:
            return None
        local = sum(1 for d in snap.deployments_of(chute_id) if d.job_id is None)
        if local >= MAX_LOCAL_INSTANCES:
            return None
        if local >= metrics.instance_count and not metrics.rate_limit_count:
            return None
        server_id = self.choose_server(snap, PlacementRequest(chute_id, chute.gpu_count))
        if server_id is None:
            return None
        cost = snap.servers[server_id].hourly_cost * chute.gpu_count
        if cost <= 0:
            cost = 1e-9
        return chute_value(metrics) / (metrics.instance_count + 1) / cost

    def choose_scale_down(self, snap: Snapshot, chute_id: str) -> str | None:
        options = []
        for d in snap.deployments_of(chute_id):
            server = snap.servers.get(d.server_id)
            if d.job_id is not None or server is None or server.locked:
                continue
            if snap.now - d.created_at <= SCALE_DOWN_MIN_AGE_S:
                continue
            total = max(1, server.gpu_count)
            options.append((server.hourly_cost * server.used / total, d.deployment_id))
        options.sort(key=lambda o: (-o[0], o[1]))
        return options[0][1] if options else None

    # preemption --------------------------------------------------------------------------

    def choose_victims(self, snap: Snapshot, req: PlacementRequest) -> Preemption | None:
        chute = snap.chutes.get(req.chute_id)
        if chute is None or chute.ban_reason:
            return None
        models = set(candidate_models(chute))
        if "h200" in models and len(models) > 1:
            models.discard("h200")
        servers = [
            s
            for s in snap.servers.values()
            if not s.locked
            and s.ready
            and s.validator == chute.validator
            and s.verified_for(models) >= req.gpu_count
        ]
        servers.sort(key=lambda s: (s.hourly_cost, s.free_for(models), s.name))
        for server in servers:
            on_server = snap.deployments_on(server.server_id)
            if any(d.chute_id == req.chute_id for d in on_server):
                return None
            picked = self._victims_on(snap, server, on_server, models, req.gpu_count)
            if picked is not None:
                return Preemption(server.server_id, picked)
        return None

    def _evictable(self, snap: Snapshot, d: Any) -> bool:
        if d.job_id is not None or d.verified_at is None:
            return False
        if snap.now - d.verified_at < VICTIM_MIN_VERIFIED_S:
            return False
        metrics = snap.metrics.get(d.chute_id)
        if metrics is None:
            return True
        if metrics.instance_count > 1:
            return True
        last = metrics.last_invocation_at
        return last is not None and snap.now - last >= VICTIM_IDLE_S

    def _victims_on(
        self,
        snap: Snapshot,
        server: ServerView,
        on_server: tuple[Any, ...],
        models: set[str],
        gpu_count: int,
    ) -> tuple[str, ...] | None:
        free = server.free_for(models)
        ranked = sorted(
            (d for d in on_server if self._evictable(snap, d)),
            key=lambda d: (victim_value(snap.metrics.get(d.chute_id)), d.deployment_id),
        )
        picked: list[str] = []
        for d in ranked:
            if free >= gpu_count:
                break
            picked.append(d.deployment_id)
            free += d.gpu_count
        return tuple(picked) if picked and free >= gpu_count else None

    # events ------------------------------------------------------------------------------

    def on_chute_created(self, snap: Snapshot, chute: ChuteView) -> int:
        return 1

    def on_bounty_change(
        self, snap: Snapshot, chute_id: str, bounty: float
    ) -> PlacementRequest | None:
        chute = snap.chutes.get(chute_id)
        if chute is None:
            return None
        return PlacementRequest(chute_id, chute.gpu_count, allow_preempt=True)

    def on_job_created(self, snap: Snapshot, job: JobView) -> JobDecision:
        chute = snap.chutes.get(job.chute_id)
        models = set(chute.supported_gpus) if chute else set()
        only_big = bool(models) and models <= PREEMPT_ONLY_MODELS
        return JobDecision(accept=True, allow_preempt=not only_big)


def create_strategy(config: dict[str, Any]) -> BaselineStrategy:
    return BaselineStrategy(config)
