"""`fill`: the baseline with changes an operator can measure in the simulator
(`python -m control_api.simulate`; numbers in control_api/README.md).

1. Rebalance: when the fleet is full, an instance whose chute has little use per instance
   is scaled down (-1) so that an under-served chute can take its GPUs, when the gain per
   GPU exceeds `rebalance_margin` times the loss and the instance is older than
   `rebalance_min_age_s` (a redeploy costs its start-up time). Use = compute multiplier x
   the share of time an instance is busy (compute time over the metrics' hour per instance;
   fully busy while requests are rate limited; idle after 10 min without an invocation).
   The baseline never scales down: an instance whose chute went quiet holds its GPUs
   forever.
2. Autoscale fills free capacity in one tick: every chute that clears the baseline's rules
   gets +1 (most use per GPU first), placed on a running copy of the free GPUs, instead of
   only the single best chute every 15 s.
3. Placement is fragmentation-aware: cheapest per GPU first, then the server the request
   fills exactly, then the smallest leftover, so 8-GPU requests still find a whole server.
4. Jobs evict only instances in the bottom half of this miner's instances by use per GPU;
   bounties preempt as the baseline does.

Config (`GEPETTO_STRATEGY_CONFIG`, JSON): `max_local_instances` (3), `min_value` (0.0),
`rebalance_margin` (2.0), `rebalance_min_age_s` (1800).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from control_api.scheduler.model import (
    ChuteMetrics,
    ChuteView,
    DeploymentView,
    PlacementRequest,
    Preemption,
    ScaleIntent,
    ServerView,
    Snapshot,
)
from control_api.scheduler.strategies.baseline import BaselineStrategy, candidate_models

STRATEGY_API_VERSION = 1
IDLE_S = 600.0
Free = dict[str, dict[str, int]]


class FillStrategy(BaselineStrategy):
    name = "fill"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.max_local = int(self.config.get("max_local_instances", 3))
        self.min_value = float(self.config.get("min_value", 0.0))
        self.margin = float(self.config.get("rebalance_margin", 2.0))
        self.min_age_s = float(self.config.get("rebalance_min_age_s", 1800.0))
        self._now = 0.0

    # values --------------------------------------------------------------------------------

    def busy(self, m: ChuteMetrics, instances: int) -> float:
        """Share of the time each of `instances` instances would be busy: the chute's compute
        time (read as compute-seconds over the metrics' one-hour window) spread over them;
        fully busy while requests are being rate limited; idle after 10 min without calls."""
        if m.last_invocation_at is not None and m.last_invocation_at < self._now - IDLE_S:
            return 0.0
        if m.rate_limit_count > 0:
            return 1.0
        return min(1.0, m.total_compute_time / 3600 / max(1, instances))

    def gain(self, snap: Snapshot, chute_id: str) -> float:
        """Multiplier-weighted busy time per GPU of one more instance of the chute."""
        m, c = snap.metrics.get(chute_id), snap.chutes.get(chute_id)
        if m is None or c is None:
            return 0.0
        self._now = snap.now
        return m.compute_multiplier * self.busy(m, m.instance_count + 1) / max(1, c.gpu_count)

    def loss(self, snap: Snapshot, d: DeploymentView) -> float:
        """The same figure for one existing instance of the deployment's chute."""
        m = snap.metrics.get(d.chute_id)
        if m is None:
            return 0.0
        self._now = snap.now
        return m.compute_multiplier * self.busy(m, m.instance_count) / max(1, d.gpu_count)

    # placement -----------------------------------------------------------------------------

    @staticmethod
    def _fit_key(s: ServerView, have: int, need: int) -> tuple[float, int, int, str]:
        leftover = have - need
        return (s.hourly_cost, 0 if leftover == 0 else 1, leftover, s.name)

    def _candidates(self, snap: Snapshot, chute: ChuteView, gpu_count: int) -> list[ServerView]:
        out = super()._candidates(snap, chute, gpu_count)
        models = candidate_models(chute)
        out.sort(key=lambda s: self._fit_key(s, s.free_for(models), gpu_count))
        return out

    def _place_on(self, snap: Snapshot, chute: ChuteView, free: Free) -> str | None:
        """Best server on the running free-GPU copy; takes the GPUs from it."""
        models = set(candidate_models(chute))
        best: tuple[tuple[float, int, int, str], str] | None = None
        for s in snap.servers.values():
            if s.locked or not s.ready or s.validator != chute.validator:
                continue
            have = sum(n for m, n in free[s.server_id].items() if not models or m in models)
            if have < chute.gpu_count:
                continue
            key = self._fit_key(s, have, chute.gpu_count)
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

    # autoscale -----------------------------------------------------------------------------

    def _wanted(self, snap: Snapshot) -> list[tuple[float, str]]:
        ranked = []
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
            gain = self.gain(snap, chute_id)
            if gain > self.min_value:
                ranked.append((gain, chute_id))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        return ranked

    def autoscale(self, snap: Snapshot) -> list[ScaleIntent]:
        free: Free = {s.server_id: dict(s.free_by_model) for s in snap.servers.values()}
        intents: list[ScaleIntent] = []
        blocked: list[tuple[float, str]] = []
        for gain, chute_id in self._wanted(snap):
            if self._place_on(snap, snap.chutes[chute_id], free) is not None:
                intents.append(ScaleIntent(chute_id, 1))
            else:
                blocked.append((gain, chute_id))
        if blocked and not intents:
            intents += self._rebalance(snap, blocked[0])
        return intents

    def _rebalance(self, snap: Snapshot, wanted: tuple[float, str]) -> list[ScaleIntent]:
        """-1 for the cheapest instance whose GPUs would fit the best blocked chute."""
        gain, chute_id = wanted
        chute = snap.chutes[chute_id]
        models = set(candidate_models(chute))
        best: tuple[float, str] | None = None
        for d in snap.deployments:
            server = snap.servers.get(d.server_id)
            if d.job_id or d.terminating or not d.active or server is None or server.locked:
                continue
            if d.chute_id == chute_id or snap.now - d.created_at < self.min_age_s:
                continue
            if models and server.model not in models:
                continue
            if server.free_for(models) + d.gpu_count < chute.gpu_count:
                continue
            loss = self.loss(snap, d)
            if gain > self.margin * loss and (best is None or loss < best[0]):
                best = (loss, d.chute_id)
        return [] if best is None else [ScaleIntent(best[1], -1)]

    def choose_scale_down(self, snap: Snapshot, chute_id: str) -> str | None:
        """The instance of the chute that the rebalance had in mind: oldest enough, active."""
        options = [
            d
            for d in snap.deployments_of(chute_id)
            if d.job_id is None and d.active and snap.now - d.created_at >= self.min_age_s
        ]
        options.sort(key=lambda d: (d.gpu_count, d.created_at, d.deployment_id))
        return options[0].deployment_id if options else super().choose_scale_down(snap, chute_id)

    # preemption ----------------------------------------------------------------------------

    def choose_victims(self, snap: Snapshot, req: PlacementRequest) -> Preemption | None:
        picked = super().choose_victims(snap, req)
        if picked is None or req.job_id is None:
            return picked
        ours = [self.loss(snap, d) for d in snap.deployments if d.job_id is None and d.active]
        if not ours:
            return picked
        median = statistics.median(ours)
        on = {d.deployment_id: d for d in snap.deployments_on(picked.server_id)}
        if all(self.loss(snap, on[i]) <= median for i in picked.deployment_ids if i in on):
            return picked
        return None


def create_strategy(config: dict[str, Any]) -> FillStrategy:
    return FillStrategy(config)
