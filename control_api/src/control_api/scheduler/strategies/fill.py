"""`fill`: the baseline with three changes an operator can measure in the simulator
(`python -m control_api.simulate`, numbers in control_api/README.md).

1. Autoscale fills free capacity in one tick: every chute whose value clears `min_value`
   gets +1 (best value first), placed on a running copy of the free GPUs, instead of only the
   single best chute every 15 s. Idle GPUs earn nothing while they wait for later ticks.
2. Placement is fragmentation-aware: among the servers a chute fits on, cheapest per GPU
   first, then the one it fills exactly, then the one whose leftover is smallest, so large
   requests (8-GPU jobs) still find a whole server.
3. Preemption pays for itself: victims are evicted only when the newcomer's value per GPU
   (a job's compute multiplier, a bounty's chute value) exceeds `preempt_margin` times the
   victims' value per GPU.

Config (`GEPETTO_STRATEGY_CONFIG`, JSON): `max_local_instances` (3), `min_value` (0.0),
`preempt_margin` (1.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_api.scheduler.model import (
    ChuteView,
    PlacementRequest,
    Preemption,
    ScaleIntent,
    ServerView,
    Snapshot,
)
from control_api.scheduler.strategies.baseline import (
    BaselineStrategy,
    candidate_models,
    chute_value,
    victim_value,
)

STRATEGY_API_VERSION = 1


class FillStrategy(BaselineStrategy):
    name = "fill"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.max_local = int(self.config.get("max_local_instances", 3))
        self.min_value = float(self.config.get("min_value", 0.0))
        self.preempt_margin = float(self.config.get("preempt_margin", 1.5))

    def _candidates(self, snap: Snapshot, chute: ChuteView, gpu_count: int) -> list[ServerView]:
        out = super()._candidates(snap, chute, gpu_count)
        models = candidate_models(chute)

        def key(s: ServerView) -> tuple[float, int, int, str]:
            leftover = s.free_for(models) - gpu_count
            return (s.hourly_cost, 0 if leftover == 0 else 1, leftover, s.name)

        out.sort(key=key)
        return out

    def autoscale(self, snap: Snapshot) -> list[ScaleIntent]:
        ranked: list[tuple[float, str]] = []
        for chute_id, metrics in snap.metrics.items():
            chute = snap.chutes.get(chute_id)
            if chute is None or chute.ban_reason or chute_id in snap.rolling_updates:
                continue
            util = snap.utilization.get(chute_id)
            if util is None or not util.scalable or util.update_in_progress:
                continue
            local = sum(1 for d in snap.deployments_of(chute_id) if d.job_id is None)
            if local >= self.max_local:
                continue
            if local >= metrics.instance_count and not metrics.rate_limit_count:
                continue
            value = chute_value(metrics) / (metrics.instance_count + 1)
            if value > self.min_value:
                ranked.append((value / max(1, chute.gpu_count), chute_id))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        free: dict[str, dict[str, int]] = {
            s.server_id: dict(s.free_by_model) for s in snap.servers.values()
        }
        intents = []
        for _, chute_id in ranked:
            chute = snap.chutes[chute_id]
            server_id = self._place_on(snap, chute, free)
            if server_id is not None:
                intents.append(ScaleIntent(chute_id, 1))
        return intents

    def _place_on(
        self, snap: Snapshot, chute: ChuteView, free: dict[str, dict[str, int]]
    ) -> str | None:
        """Best server on the running free-GPU copy; takes the GPUs from it."""
        models = set(candidate_models(chute))
        best: tuple[tuple[float, int, int, str], str] | None = None
        for s in snap.servers.values():
            if s.locked or not s.ready or s.validator != chute.validator:
                continue
            have = sum(n for m, n in free[s.server_id].items() if not models or m in models)
            if have < chute.gpu_count:
                continue
            leftover = have - chute.gpu_count
            key = (s.hourly_cost, 0 if leftover == 0 else 1, leftover, s.name)
            if best is None or key < best[0]:
                best = (key, s.server_id)
        if best is None:
            return None
        need = chute.gpu_count
        for m, n in sorted(free[best[1]].items()):
            if need and (not models or m in models):
                take = min(n, need)
                free[best[1]][m] = n - take
                need -= take
        return best[1]

    def choose_victims(self, snap: Snapshot, req: PlacementRequest) -> Preemption | None:
        picked = super().choose_victims(snap, req)
        if picked is None:
            return None
        newcomer = self._request_value(snap, req) / max(1, req.gpu_count)
        victims = [
            d
            for d in snap.deployments_on(picked.server_id)
            if d.deployment_id in picked.deployment_ids
        ]
        gpus = sum(d.gpu_count for d in victims) or 1
        lost = sum(victim_value(snap.metrics.get(d.chute_id)) for d in victims) / gpus
        return picked if newcomer > self.preempt_margin * lost else None

    def _request_value(self, snap: Snapshot, req: PlacementRequest) -> float:
        metrics = snap.metrics.get(req.chute_id)
        if metrics is None:
            return 0.0
        if req.job_id is not None:
            return metrics.compute_multiplier * req.gpu_count
        return victim_value(metrics) * max(1, metrics.instance_count)


def create_strategy(config: dict[str, Any]) -> FillStrategy:
    return FillStrategy(config)
