"""What a strategy sees and returns (runtime contract §9.5): a read-only `Snapshot` and plain
decision values. Frozen dataclasses and read-only mappings only, so a strategy cannot change
the scheduler's state by accident, and no I/O: a hook is a pure function of its arguments."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class ServerView:
    server_id: str
    name: str
    validator: str
    hourly_cost: float  # per GPU per hour (what `chutes-miner add-node --hourly-cost` records)
    gpu_count: int
    model: str  # gpu short ref (h100, h200...) of most of its GPUs
    locked: bool
    verified_by_model: Mapping[str, int]  # verified GPUs per model, claimed or not
    free_by_model: Mapping[str, int]  # verified GPUs per model that no deployment holds
    free_disk_gb: float | None = None  # None = not known (no disk check possible)
    ready: bool = True

    @property
    def free(self) -> int:
        return sum(self.free_by_model.values())

    @property
    def used(self) -> int:
        return sum(self.verified_by_model.values()) - self.free

    def free_for(self, models: Iterable[str]) -> int:
        """Free verified GPUs of any of `models` (all models if empty)."""
        wanted = set(models)
        if not wanted:
            return self.free
        return sum(n for m, n in self.free_by_model.items() if m in wanted)

    def verified_for(self, models: Iterable[str]) -> int:
        wanted = set(models)
        if not wanted:
            return sum(self.verified_by_model.values())
        return sum(n for m, n in self.verified_by_model.items() if m in wanted)


@dataclass(frozen=True)
class DeploymentView:
    deployment_id: str
    chute_id: str
    server_id: str
    gpu_count: int
    job_id: str | None
    active: bool
    stub: bool
    created_at: float  # epoch seconds
    verified_at: float | None
    terminating: bool = False
    instance_id: str | None = None


@dataclass(frozen=True)
class ChuteView:
    chute_id: str
    validator: str
    version: str
    gpu_count: int
    supported_gpus: tuple[str, ...]
    ban_reason: str | None = None
    name: str | None = None
    chutes_version: str | None = None


@dataclass(frozen=True)
class ChuteMetrics:
    """The validator's `/miner/metrics/` row for a chute (network-wide figures)."""

    chute_id: str
    compute_multiplier: float = 1.0
    total_invocations: float = 0.0
    total_compute_time: float = 0.0
    rate_limit_count: float = 0.0
    instance_count: int = 0
    total_usage_usd: float = 0.0
    last_invocation_at: float | None = None  # epoch seconds, Prometheus when known


@dataclass(frozen=True)
class Utilization:
    chute_id: str
    scalable: bool = True
    update_in_progress: bool = False


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of the miner's state plus the validator caches, at `now`."""

    now: float
    servers: Mapping[str, ServerView]
    chutes: Mapping[str, ChuteView]
    deployments: tuple[DeploymentView, ...] = ()
    metrics: Mapping[str, ChuteMetrics] = field(default_factory=lambda: MappingProxyType({}))
    utilization: Mapping[str, Utilization] = field(default_factory=lambda: MappingProxyType({}))
    rolling_updates: frozenset[str] = frozenset()
    _by_chute: Mapping[str, tuple[DeploymentView, ...]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )
    _by_server: Mapping[str, tuple[DeploymentView, ...]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )

    @classmethod
    def build(
        cls,
        now: float,
        servers: Iterable[ServerView],
        chutes: Iterable[ChuteView],
        deployments: Iterable[DeploymentView] = (),
        metrics: Iterable[ChuteMetrics] = (),
        utilization: Iterable[Utilization] = (),
        rolling_updates: Iterable[str] = (),
    ) -> Snapshot:
        deps = tuple(deployments)
        by_chute: dict[str, list[DeploymentView]] = {}
        by_server: dict[str, list[DeploymentView]] = {}
        for d in deps:
            by_chute.setdefault(d.chute_id, []).append(d)
            by_server.setdefault(d.server_id, []).append(d)
        return cls(
            now=now,
            servers=MappingProxyType({s.server_id: s for s in servers}),
            chutes=MappingProxyType({c.chute_id: c for c in chutes}),
            deployments=deps,
            metrics=MappingProxyType({m.chute_id: m for m in metrics}),
            utilization=MappingProxyType({u.chute_id: u for u in utilization}),
            rolling_updates=frozenset(rolling_updates),
            _by_chute=MappingProxyType({k: tuple(v) for k, v in by_chute.items()}),
            _by_server=MappingProxyType({k: tuple(v) for k, v in by_server.items()}),
        )

    def deployments_of(self, chute_id: str) -> tuple[DeploymentView, ...]:
        return tuple(d for d in self._by_chute.get(chute_id, ()) if not d.terminating)

    def deployments_on(self, server_id: str) -> tuple[DeploymentView, ...]:
        return tuple(d for d in self._by_server.get(server_id, ()) if not d.terminating)


# Decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleIntent:
    chute_id: str
    delta: int  # +1 or -1


@dataclass(frozen=True)
class PlacementRequest:
    chute_id: str
    gpu_count: int
    disk_gb: float = 10.0
    job_id: str | None = None
    allow_preempt: bool = False


@dataclass(frozen=True)
class Preemption:
    server_id: str
    deployment_ids: tuple[str, ...]


@dataclass(frozen=True)
class JobView:
    job_id: str
    chute_id: str
    gpu_count: int
    compute_multiplier: float
    disk_gb: float
    method: str | None = None


@dataclass(frozen=True)
class JobDecision:
    accept: bool
    allow_preempt: bool
