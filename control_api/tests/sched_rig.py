"""A scheduler wired to the test PostgreSQL, in-memory Kubernetes and validator stand-ins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2
from control_api.core.config import Settings
from control_api.db.pool import Database
from control_api.scheduler.config import SchedulerSettings
from control_api.scheduler.core import Scheduler
from control_api.scheduler.reconcile import Reconciler
from control_api.scheduler.strategy import StrategyRunner, load_strategy
from control_api.schemas import gepetto as ev

from tests.sched_standins import MemoryChuteKube, MemoryMinerValidator, MemoryNodesValidator


def scheduler_settings(base: Settings, **overrides: Any) -> SchedulerSettings:
    values = {k: getattr(base, k) for k in Settings.model_fields}
    values.update({"undeploy_wait_s": 2.0, "node_missing_grace_s": 0.0})
    values.update(overrides)
    return SchedulerSettings(**values)


@dataclass
class Rig:
    settings: SchedulerSettings
    db: Database
    kube: Any  # MemoryChuteKube, or RealChuteKube against a real API server
    validator: MemoryMinerValidator
    nodes: MemoryNodesValidator
    scheduler: Scheduler
    reconciler: Reconciler

    @property
    def validator_hotkey(self) -> str:
        return self.settings.validators.supported[0].hotkey

    def event(self, event_type: str, **data: Any) -> ev.Event:
        data.setdefault("validator", self.validator_hotkey)
        return ev.EVENT_ADAPTER.validate_python({"event_type": event_type, "event_data": data})

    def handle(self, event_type: str, **data: Any) -> None:
        self.scheduler.handle_sync(self.event(event_type, **data))

    def close(self) -> None:
        self.scheduler.strategy.close()
        self.db.close()


def make_rig(base: Settings, strategy: Any = None, kube: Any = None, **overrides: Any) -> Rig:
    settings = scheduler_settings(base, **overrides)
    db = Database(settings.postgresql.get_secret_value(), maxconn=32)
    kube = kube if kube is not None else MemoryChuteKube()
    validator = MemoryMinerValidator()
    nodes = MemoryNodesValidator()
    runner = StrategyRunner(
        strategy if strategy is not None else load_strategy(settings.gepetto_strategy)
    )
    scheduler = Scheduler(settings, db, kube, validator, runner, nodes_validator=nodes)
    reconciler = Reconciler(scheduler)
    scheduler.reconcile = reconciler.run
    return Rig(settings, db, kube, validator, nodes, scheduler, reconciler)


def rows(db: psycopg2.extensions.connection, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with db.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()
