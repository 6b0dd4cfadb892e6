"""Reconcile (runtime contract §9.3): repair drift between PostgreSQL, each validator and
Kubernetes, at start, every `reconcile_interval_s` and after each `socket_reconnected`.

Steps, each on its own (one failing step is logged, the others still run):
0. Validators (scheduler/reconcile_remote.py): each validator's chutes and instances, read
   whole, against the local chutes and deployments; a validator whose lists cannot be read
   whole is skipped, its destructive steps included.
1. Deployments: finish the terminating ones whose pods are gone (release GPUs, delete the
   row); undeploy stubs older than `stub_timeout_s`, rows whose Job vanished (after a 60 s
   grace for a Job being created) and rows whose Job completed or failed.
2. Orphans: chute Jobs and Services no row knows, and code ConfigMaps of no local chute
   version, are deleted; so are GraVal bootstrap Jobs (and their Services) left behind by an
   add-node that stopped: no server row of their node is `Bootstrapping`, or they are older
   than an add-node can last (twice `graval_bootstrap_timeout` and 5 minutes).
3. Servers: a node whose UID is absent from the cluster in two reconciles in a row, and for
   at least `node_missing_grace_s`, is handled as `server_deleted`. A node that merely looks
   unhealthy (NotReady, its GPU device plugin reporting 0 GPUs, labels lost) only gets a
   status and an alert: upstream deregistered the whole server when the device plugin
   blinked. Placement skips unhealthy servers; their deployments stay.
4. Claims: deployments not holding exactly their chute's GPU count, live pods whose
   `NVIDIA_VISIBLE_DEVICES` differ from their claimed GPUs, and GPUs in two live pods are
   alerted and the newer deployment undeployed.
5. Free-disk figures of the ready nodes are refreshed for placement.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from control_api.clients.k8s import NodeInfo
from control_api.db import claims
from control_api.db import gepetto as q
from control_api.scheduler import manifests
from control_api.scheduler.core import Scheduler
from control_api.scheduler.reconcile_remote import (
    INSTANCE_GRACE_S,
    RemoteReport,
    reconcile_validators,
)
from control_api.schemas.gepetto import ServerDeletedData

log = logging.getLogger(__name__)
JOB_GRACE_S = 60.0
GRAVAL_MIN_AGE_S = 120.0  # a GraVal Job this young is never judged (its row is written first)
GRAVAL_SLACK_S = 300.0  # beyond the bootstrap and verification timeouts of one add-node


@dataclass
class ReconcileReport:
    undeployed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    servers_deleted: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    remote: RemoteReport = field(default_factory=RemoteReport)


def node_status(node: NodeInfo | None) -> str:
    if node is None:
        return "Missing"
    if not node.ready:
        return "NotReady"
    if node.gpu_capacity <= 0:
        return "NoGpuCapacity"
    if not node.external_ip:
        return "LabelsLost"
    return "Ready"


class Reconciler:
    def __init__(
        self,
        scheduler: Scheduler,
        clock: Callable[[], float] = time.monotonic,
        instance_grace_s: float = INSTANCE_GRACE_S,
    ) -> None:
        self.s = scheduler
        self.clock = clock
        self.instance_grace_s = instance_grace_s
        self._missing: dict[str, tuple[int, float]] = {}  # server_id -> (cycles, first seen)
        self._empty_rounds: dict[str, int] = {}  # validator -> suspiciously empty lists in a row
        self.graval_min_age_s = GRAVAL_MIN_AGE_S

    def run(self) -> ReconcileReport:
        report = ReconcileReport()
        steps = (self._validators, self._deployments, self._orphans, self._graval)
        for step in (*steps, self._servers, self._claims, self._disk):
            try:
                step(report)
            except Exception as exc:  # noqa: BLE001 - one broken step must not stop the others
                log.exception("scheduler.reconcile_step_failed", extra={"step": step.__name__})
                report.errors.append(f"{step.__name__}: {type(exc).__name__}: {exc}")
        log.info(
            "scheduler.reconciled",
            extra={
                "undeployed": len(report.undeployed),
                "released": len(report.released),
                "orphans": len(report.orphans_deleted),
                "violations": len(report.violations),
                "remote_changes": report.remote.changes(),
                "validators_skipped": len(report.remote.validators_skipped),
                "errors": len(report.errors),
            },
        )
        return report

    def _validators(self, report: ReconcileReport) -> None:
        report.remote = reconcile_validators(self.s, self.instance_grace_s, self._empty_rounds)
        report.errors += report.remote.errors

    def _deployments(self, report: ReconcileReport) -> None:
        with self.s.db.connection() as conn:
            rows = q.deployments(conn)
        objects = self.s.kube.chute_objects()
        for d in rows:
            state = objects.jobs.get(d.deployment_id)
            reason = None
            if d.terminating:
                reason = "finish termination"
            elif d.stub and d.age_s > self.s.settings.stub_timeout_s:
                reason = "stub never activated"
            elif state is None and d.age_s > JOB_GRACE_S:
                reason = "job vanished"
            elif state in ("failed", "succeeded"):
                reason = f"job {state}"
            if reason is None:
                continue
            done = self.s.undeploy(d.deployment_id, reason=reason)
            (report.released if d.terminating and done else report.undeployed).append(
                d.deployment_id
            )

    def _orphans(self, report: ReconcileReport) -> None:
        # Objects first, rows second: a claim commits its row before its objects exist, so
        # every object listed here already has its row unless it really is an orphan.
        objects = self.s.kube.chute_objects()
        with self.s.db.connection() as conn:
            known = {d.deployment_id for d in q.deployments(conn)}
            wanted = {
                manifests.code_configmap_name(c, v) for c, v in q.code_configmaps_in_use(conn)
            }
        for dep in sorted((set(objects.jobs) | objects.services) - known):
            self.s.kube.delete_deployment(dep)
            report.orphans_deleted.append(f"deployment {dep}")
        for name in sorted(objects.configmaps - wanted):
            self.s.kube.delete_code(name)
            report.orphans_deleted.append(f"configmap {name}")

    def _graval(self, report: ReconcileReport) -> None:
        """GraVal bootstrap Jobs left behind (the API stopped during an add-node): a Job whose
        node has no add-node running (no server row in `Bootstrapping`), or one older than an
        add-node can last (the bootstrap and the verification, each up to
        GRAVAL_BOOTSTRAP_TIMEOUT), is deleted with its Service. It holds the node's GPUs."""
        jobs = self.s.kube.graval_jobs()
        if not jobs:
            return
        with self.s.db.connection() as conn:
            adding = {r.name for r in q.servers(conn) if r.status == "Bootstrapping"}
        longest = 2.0 * self.s.settings.graval_bootstrap_timeout + GRAVAL_SLACK_S
        for job in sorted(jobs, key=lambda j: j.name):
            running = job.node in adding and job.age_s < longest
            if running or job.age_s < self.graval_min_age_s:
                continue
            log.warning(
                "scheduler.graval_leftover",
                extra={"job": job.name, "node": job.node, "age_s": round(job.age_s)},
            )
            self.s.kube.delete_graval_objects(job.name)
            report.orphans_deleted.append(f"graval {job.name}")

    def _servers(self, report: ReconcileReport) -> None:
        nodes = {n.name: n for n in self.s.kube.nodes()}
        with self.s.db.connection() as conn:
            rows = q.servers(conn)
        now = self.clock()
        for server in rows:
            node = nodes.get(server.name)
            if node is not None and node.uid != server.server_id:
                node = None  # the name now belongs to another node
            if node is None:
                cycles, since = self._missing.get(server.server_id, (0, now))
                cycles += 1
                self._missing[server.server_id] = (cycles, since)
                if cycles >= 2 and now - since >= self.s.settings.node_missing_grace_s:
                    log.error("scheduler.node_gone", extra={"server": server.name})
                    self.s.on_server_deleted(ServerDeletedData(server_id=server.server_id))
                    self._missing.pop(server.server_id, None)
                    report.servers_deleted.append(server.name)
                    continue
            else:
                self._missing.pop(server.server_id, None)
            if server.status in ("Bootstrapping", "Deleting"):
                continue
            status = node_status(node)
            with self.s.db.connection() as conn:
                changed = q.set_status(conn, server.server_id, status)
            if changed:
                report.statuses[server.name] = status
                level = logging.INFO if status == "Ready" else logging.WARNING
                log.log(
                    level,
                    "scheduler.server_status",
                    extra={"server": server.name, "status": status},
                )

    def _claims(self, report: ReconcileReport) -> None:
        with self.s.db.connection() as conn:
            bad = claims.violations(conn)
            held: dict[str, set[str]] = {}
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT deployment_id, gpu_id FROM gpus WHERE deployment_id IS NOT NULL"
                )
                for dep, gpu in cur.fetchall():
                    held.setdefault(dep, set()).add(gpu)
            ages = {d.deployment_id: d.age_s for d in q.deployments(conn)}
        undo: set[str] = set()
        for v in bad:
            log.error(
                "scheduler.claim_violation",
                extra={"deployment_id": v.deployment_id, "held": v.held, "expected": v.expected},
            )
            undo.add(v.deployment_id)
        pods = [p for p in self.s.kube.chute_pods() if p.deployment_id in ages]
        seen: Counter[str] = Counter()
        owner: dict[str, list[str]] = {}
        for p in pods:
            devices = set(visible_gpu_ids(p.visible_devices))
            if devices != held.get(p.deployment_id, set()):
                log.error("scheduler.pod_gpus_differ", extra={"deployment_id": p.deployment_id})
                undo.add(p.deployment_id)
            for g in devices:
                seen[g] += 1
                owner.setdefault(g, []).append(p.deployment_id)
        for g, n in seen.items():
            if n > 1:
                newest = min(owner[g], key=lambda dep: ages.get(dep, 0.0))
                log.error("scheduler.gpu_shared", extra={"gpu_id": g, "deployments": owner[g]})
                undo.add(newest)
        for dep in sorted(undo):
            report.violations.append(dep)
            self.s.undeploy(dep, reason="claim invariant violated")

    def _disk(self, report: ReconcileReport) -> None:
        with self.s.db.connection() as conn:
            names = [s.name for s in q.servers(conn) if s.status == "Ready"]
        self.s.refresh_disk(names)


def visible_gpu_ids(visible: str | None) -> list[str]:
    """32-hex ids from `GPU-xxxxxxxx-xxxx-...` entries."""
    out = []
    for item in (visible or "").split(","):
        item = item.strip()
        if item.startswith("GPU-"):
            out.append(item[4:].replace("-", "").lower())
    return out
