"""The scheduler's decisions made real (runtime contract §9.1, §9.2): event handlers, placement
(strategy -> claim -> launch config -> Kubernetes objects), undeploy (objects -> pods gone ->
release) and autoscale. Everything here is synchronous and runs on worker threads (psycopg2,
the Kubernetes client and httpx block); `Scheduler.handle` is the async entry the stream
consumer awaits.

Handlers are idempotent: each checks what already happened (a row updated, a deployment for
a job, an object that exists) before acting, so an event delivered twice changes nothing the
second time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from control_api.clients.k8s import KubeApiError, KubeUnavailable
from control_api.clients.k8s_chutes import ChuteKube
from control_api.clients.miner_validator import LaunchConfig, MinerValidator
from control_api.clients.validator import ValidatorClient, ValidatorError
from control_api.db import claims
from control_api.db import gepetto as q
from control_api.db.pool import Database
from control_api.scheduler import manifests
from control_api.scheduler.config import SchedulerSettings
from control_api.scheduler.model import (
    ChuteMetrics,
    JobView,
    PlacementRequest,
    Snapshot,
    Utilization,
)
from control_api.scheduler.strategy import StrategyRunner
from control_api.scheduler.stream import Permanent
from control_api.schemas import gepetto as ev

log = logging.getLogger(__name__)
DISK_CACHE_S = 300.0
CLAIM_TRIES = 3


@dataclass
class RemoteCache:
    """The validators' list streams autoscale reads, replaced only by complete reads."""

    metrics: dict[str, ChuteMetrics] = field(default_factory=dict)
    utilization: dict[str, Utilization] = field(default_factory=dict)
    rolling: set[str] = field(default_factory=set)
    refreshed_at: float = 0.0


class Scheduler:
    def __init__(
        self,
        settings: SchedulerSettings,
        db: Database,
        kube: ChuteKube,
        validator: MinerValidator,
        strategy: StrategyRunner,
        *,
        nodes_validator: ValidatorClient | None = None,
        clock: Callable[[], float] = time.time,
        reconcile: Callable[[], object] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.kube = kube
        self.validator = validator
        self.nodes_validator = nodes_validator
        self.strategy = strategy
        self.clock = clock
        self.reconcile = reconcile
        self.remote = RemoteCache()
        self.state_cache = q.StateCache()
        self._disk: dict[str, tuple[float, float | None]] = {}
        self._lock = threading.Lock()
        self._chute_locks: dict[str, threading.RLock] = {}

    # plumbing ----------------------------------------------------------------------------

    def api_of(self, validator: str) -> str | None:
        v = self.settings.validators.get(validator)
        return v.api if v else None

    def chute_lock(self, chute_id: str) -> threading.RLock:
        """Held by an event handler about the chute and by reconcile's steps for it: the
        stream orders events per chute, this keeps reconcile out of their way too."""
        with self._lock:
            return self._chute_locks.setdefault(chute_id, threading.RLock())

    def _for_us(self, data: ev._Data) -> bool:
        return data.miner_hotkey is None or data.miner_hotkey == self.settings.miner_ss58

    def disk_figures(self) -> dict[str, float | None]:
        now = self.clock()
        with self._lock:
            return {n: v for n, (at, v) in self._disk.items() if now - at < DISK_CACHE_S}

    def refresh_disk(self, nodes: list[str]) -> None:
        for node in nodes:
            try:
                value = self.kube.node_free_disk_gb(node)
            except (KubeApiError, KubeUnavailable) as exc:
                log.warning("scheduler.disk_unknown", extra={"node": node, "error": str(exc)})
                continue
            with self._lock:
                self._disk[node] = (self.clock(), value)

    def _disk_used(self, node: str, gb: float) -> None:
        with self._lock:
            at, value = self._disk.get(node, (0.0, None))
            if value is not None:
                self._disk[node] = (at, value - gb)

    def snapshot(self) -> Snapshot:
        with self.db.connection() as conn:
            q.snapshot_tx(conn)
            servers, chutes, deps = self.state_cache.read(conn, self.disk_figures())
        r = self.remote
        return Snapshot.build(
            self.clock(),
            servers,
            chutes,
            deps,
            r.metrics.values(),
            r.utilization.values(),
            r.rolling,
        )

    async def handle(self, event: ev.Event) -> None:
        await asyncio.to_thread(self.handle_sync, event)

    def handle_sync(self, event: ev.Event) -> None:
        data: Any = event.event_data
        if not self._for_us(data):
            log.info("scheduler.event_not_ours", extra={"event_type": event.event_type})
            return
        handler = getattr(self, f"on_{event.event_type}")
        chute_id = getattr(data, "chute_id", None)
        if chute_id:
            with self.chute_lock(chute_id):
                handler(data)
        else:
            handler(data)

    # chutes ------------------------------------------------------------------------------

    def _fetch_chute(self, validator: str, chute_id: str, version: str) -> ev.RemoteChute | None:
        api = self.api_of(validator)
        if api is None:
            raise Permanent(f"unknown validator {validator!r}")
        return self.validator.get_chute(api, chute_id, version)

    def _store_chute(self, validator: str, chute: ev.RemoteChute) -> None:
        with self.db.connection() as conn:
            changed = q.upsert_chute(conn, validator, chute)
        if changed:
            log.info("scheduler.chute_stored", extra={"chute_id": chute.chute_id})
        try:
            self.kube.ensure_code(
                manifests.code_configmap(chute.chute_id, chute.version, chute.filename, chute.code)
            )
        except manifests.ManifestError as exc:
            raise Permanent(f"chute {chute.chute_id}: {exc}") from None

    def on_chute_created(self, d: ev.ChuteData) -> None:
        chute = self._fetch_chute(d.validator, d.chute_id, d.version)
        if chute is None:
            log.info("scheduler.chute_gone", extra={"chute_id": d.chute_id})
            return
        self._store_chute(d.validator, chute)
        if d.job_only:
            return
        snap = self.snapshot()
        view = snap.chutes.get(chute.chute_id)
        if view is None:
            return
        wanted = self.strategy.on_chute_created(snap, view)
        have = sum(1 for x in snap.deployments_of(chute.chute_id) if x.job_id is None)
        for _ in range(max(0, wanted - have)):
            if self.place(PlacementRequest(chute.chute_id, chute.gpu_count)) is None:
                break

    def on_chute_updated(self, d: ev.ChuteData) -> None:
        chute = self._fetch_chute(d.validator, d.chute_id, d.version)
        if chute is not None:
            self._store_chute(d.validator, chute)

    def on_chute_deleted(self, d: ev.ChuteData) -> None:
        with self.db.connection() as conn:
            ids = q.deployment_ids(conn, chute_id=d.chute_id)
            chute = q.get_chute(conn, d.chute_id)
        pending = [i for i in ids if not self.undeploy(i, reason="chute deleted")]
        if pending:
            raise RuntimeError(f"{len(pending)} deployments still stopping")
        with self.db.connection() as conn:
            q.delete_chute(conn, d.chute_id)
        if chute is not None:
            self.kube.delete_code(manifests.code_configmap_name(chute.chute_id, chute.version))

    def on_bounty_change(self, d: ev.BountyData) -> None:
        with self.db.connection() as conn:
            if q.chute_has_deployments(conn, d.chute_id):
                return
        snap = self.snapshot()
        req = self.strategy.on_bounty_change(snap, d.chute_id, d.bounty)
        if req is not None:
            self.place(req, snap=snap)

    def on_image_created(self, d: ev.ImageData) -> None:
        log.info("scheduler.image_created", extra={"image_id": d.image_id})

    def on_image_deleted(self, d: ev.ImageData) -> None:
        log.info("scheduler.image_deleted", extra={"image_id": d.image_id})

    def on_image_updated(self, d: ev.ImageUpdatedData) -> None:
        if d.chute_ids:
            with self.db.connection() as conn:
                q.set_image(conn, d.chute_ids, d.image, d.chutes_version)

    # GPUs and instances ------------------------------------------------------------------

    def on_gpu_verified(self, d: ev.GpuVerifiedData) -> None:
        with self.db.connection() as conn:
            q.gpu_verified(conn, d.gpu_id)

    def on_instance_created(self, d: ev.InstanceData) -> None:
        if d.config_id:
            with self.db.connection() as conn:
                q.instance_created(conn, d.config_id, d.instance_id)

    def on_instance_verified(self, d: ev.InstanceData) -> None:
        with self.db.connection() as conn:
            q.instance_verified(conn, d.instance_id)

    def on_instance_activated(self, d: ev.InstanceData) -> None:
        if d.config_id:
            with self.db.connection() as conn:
                q.instance_activated(conn, d.config_id, d.instance_id)

    def on_instance_deleted(self, d: ev.InstanceData) -> None:
        with self.db.connection() as conn:
            ids = q.deployment_ids(conn, instance_id=d.instance_id)
            if not ids and d.config_id:
                ids = q.deployment_ids(conn, config_id=d.config_id)
        for i in ids:  # the validator already dropped the instance: no DELETE back
            self.undeploy(i, tell_validator=False, reason="instance deleted")

    def on_rolling_update(self, d: ev.RollingUpdateData) -> None:
        chute = self._fetch_chute(d.validator, d.chute_id, d.new_version)
        if chute is None:
            return
        self._store_chute(d.validator, chute)
        with self.db.connection() as conn:
            old = q.deployment_ids(conn, instance_id=d.instance_id)
            # terminating from here on (undeploy's first step); it tells us the server
            held = claims.mark_terminating(conn, old[0]) if old else None
        server = held.server_id if held else None
        for i in old:
            self.undeploy(i, reason="rolling update")
        self.place(PlacementRequest(chute.chute_id, chute.gpu_count), prefer_server=server)

    # jobs --------------------------------------------------------------------------------

    def on_job_created(self, d: ev.JobCreatedData) -> None:
        if self.settings.miner_ss58 in d.exclude:
            log.info("scheduler.job_excluded", extra={"job_id": d.job_id})
            return
        with self.db.connection() as conn:
            if q.deployment_ids(conn, job_id=d.job_id):
                return  # already ours (a redelivered event)
        snap = self.snapshot()
        chute = snap.chutes.get(d.chute_id)
        if chute is None:
            log.info("scheduler.job_unknown_chute", extra={"job_id": d.job_id})
            return
        job = JobView(
            d.job_id, d.chute_id, d.gpu_count or chute.gpu_count, d.compute_multiplier,
            d.disk_gb, d.method,
        )  # fmt: skip
        decision = self.strategy.on_job_created(snap, job)
        if not decision.accept:
            return
        req = PlacementRequest(
            d.chute_id, job.gpu_count, d.disk_gb, d.job_id, decision.allow_preempt
        )
        if self.place(req, snap=snap) is None:
            api = self.api_of(chute.validator)
            if api is not None:
                try:
                    self.validator.release_job(api, d.job_id)
                except ValidatorError as exc:
                    log.warning("scheduler.job_release_failed", extra={"error": exc.reason})

    def on_job_deleted(self, d: ev.JobDeletedData) -> None:
        with self.db.connection() as conn:
            ids = q.deployment_ids(conn, job_id=d.job_id)
        for i in ids:
            self.undeploy(i, reason="job deleted")

    # servers and internal events ---------------------------------------------------------

    def on_server_deleted(self, d: ev.ServerDeletedData) -> None:
        with self.db.connection() as conn:
            server = q.get_server(conn, d.server_id)
            if server is None:
                return
            with conn.cursor() as cur:  # no new claims from here on
                cur.execute("UPDATE servers SET locked = true WHERE server_id = %s", (d.server_id,))
            q.set_status(conn, d.server_id, "Deleting")
            ids = q.deployment_ids(conn, server_id=d.server_id)
        pending = [i for i in ids if not self.undeploy(i, reason="server deleted")]
        if pending:
            raise RuntimeError(f"{len(pending)} deployments on {server.name} still stopping")
        with self.db.connection() as conn:
            gpus = q.server_gpus(conn, d.server_id)
        if self.nodes_validator is not None:
            api = self.api_of(server.validator)
            for gpu_id, _ in gpus:
                if api is not None:
                    self.nodes_validator.delete_node(api, gpu_id)
        with self.db.connection() as conn:
            q.delete_server_if_empty(conn, d.server_id)
        log.info("scheduler.server_deleted", extra={"server": server.name})

    def on_undeploy_requested(self, d: ev.UndeployData) -> None:
        for i in d.deployment_ids:
            self.undeploy(i, reason=d.reason or "requested")

    def on_socket_reconnected(self, d: ev.ReconnectedData) -> None:
        if self.reconcile is not None:
            self.reconcile()

    # placement ---------------------------------------------------------------------------

    def place(
        self,
        req: PlacementRequest,
        *,
        snap: Snapshot | None = None,
        prefer_server: str | None = None,
    ) -> str | None:
        """Choose a server (or victims), claim, launch; the deployment id or None."""
        launch: LaunchConfig | None = None
        for attempt in range(CLAIM_TRIES):
            snap = snap if snap is not None and attempt == 0 else self.snapshot()
            chute = snap.chutes.get(req.chute_id)
            if chute is None or chute.ban_reason:
                return None
            server_id = None
            if prefer_server and attempt == 0:
                s = snap.servers.get(prefer_server)
                if s and not s.locked and s.free_for(chute.supported_gpus) >= req.gpu_count:
                    server_id = prefer_server
            if server_id is None:
                server_id = self.strategy.choose_server(snap, req)
            if server_id is None and req.allow_preempt:
                pre = self.strategy.choose_victims(snap, req)
                if pre is not None:
                    launch = launch or self._launch_config(chute.validator, req)
                    if launch is None:
                        return None
                    for victim in pre.deployment_ids:  # launch token first, then evict
                        self.undeploy(victim, reason=f"preempted for {req.chute_id}")
                    server_id = pre.server_id
                    snap = None
            if server_id is None:
                log.info("scheduler.no_capacity", extra={"chute_id": req.chute_id})
                return None
            try:
                with self.db.connection() as conn:
                    got = claims.claim(
                        conn, claims.ClaimRequest(req.chute_id, server_id, job_id=req.job_id)
                    )
            except claims.ClaimRefused as exc:
                log.info(
                    "scheduler.claim_refused",
                    extra={"chute_id": req.chute_id, "server_id": server_id, "reason": exc.reason},
                )
                if exc.reason in ("chute_missing", "chute_banned"):
                    return None
                snap = None
                continue
            return self._launch(got, req, launch)
        return None

    def _launch_config(self, validator: str, req: PlacementRequest) -> LaunchConfig | None:
        api = self.api_of(validator)
        if api is None:
            return None
        try:
            return self.validator.launch_config(api, req.chute_id, req.job_id)
        except ValidatorError as exc:
            log.info(
                "scheduler.launch_refused",
                extra={"chute_id": req.chute_id, "status": exc.status, "reason": exc.reason},
            )
            return None

    def _launch(
        self, got: claims.Claim, req: PlacementRequest, launch: LaunchConfig | None
    ) -> str | None:
        dep = got.deployment_id
        launch = launch or self._launch_config(got.validator, req)
        if launch is None:
            self._drop_claim(dep)
            return None
        try:
            with self.db.connection() as conn:
                q.set_launch(conn, dep, launch.config_id)
                chute = q.get_chute(conn, got.chute_id)
                server = q.get_server(conn, got.server_id)
            if chute is None or server is None:
                raise Permanent("chute or server vanished during placement")
            spec = self._spec(got, req, launch, chute, server)
            self.kube.ensure_code(
                manifests.code_configmap(chute.chute_id, chute.version, chute.filename, chute.code)
            )
            ports = self.kube.create_service(manifests.service(spec))
            self.kube.create_job(manifests.job(spec, ports))
            with self.db.connection() as conn:
                q.set_endpoint(conn, dep, spec.host, ports[8000])
        except (KubeApiError, KubeUnavailable, manifests.ManifestError, Permanent) as exc:
            log.error("scheduler.deploy_failed", extra={"deployment_id": dep, "error": str(exc)})
            self.undeploy(dep, tell_validator=False, reason="deploy failed")
            return None
        self._disk_used(server.name, req.disk_gb)
        log.info(
            "scheduler.deployed",
            extra={"deployment_id": dep, "chute_id": got.chute_id, "server": server.name},
        )
        return dep

    def _spec(
        self,
        got: claims.Claim,
        req: PlacementRequest,
        launch: LaunchConfig,
        chute: q.ChuteRow,
        server: q.ServerRow,
    ) -> manifests.ChuteDeploySpec:
        s = self.settings
        registry = f"{got.validator.lower()}.localregistry.chutes.ai:{s.registry_proxy_port}"
        return manifests.ChuteDeploySpec(
            deployment_id=got.deployment_id,
            chute_id=chute.chute_id,
            version=chute.version,
            config_id=launch.config_id,
            job_id=req.job_id,
            node=server.name,
            host=server.ip_address or "",
            image=f"{registry}/{chute.image}",
            code=chute.code,
            filename=chute.filename,
            ref_str=chute.ref_str,
            chutes_version=chute.chutes_version,
            miner_ss58=s.miner_ss58,
            validator=got.validator,
            gpu_ids=got.gpu_ids,
            cpu_per_gpu=server.cpu_per_gpu,
            memory_per_gpu=server.memory_per_gpu,
            disk_gb=int(req.disk_gb),
            launch_token=launch.token,
            job_ports=self._job_ports(got.validator, chute) if req.job_id else (),
            runtime_class=s.chute_runtime_class,
            cache_cleaner_image=s.cache_cleaner_image,
            cache_max_age_days=s.cache_max_age_days,
            cache_max_size_gb=s.cache_overrides.get(server.name, s.cache_max_size_gb),
        )

    def _job_ports(self, validator: str, chute: q.ChuteRow) -> tuple[manifests.JobPort, ...]:
        """The ports a job deployment exposes: its chute's `jobs[].ports` (not stored
        locally, so fetched from the validator; none when that fails)."""
        api = self.api_of(validator)
        if api is None:
            return ()
        try:
            remote = self.validator.get_chute(api, chute.chute_id, chute.version)
        except ValidatorError as exc:
            log.warning("scheduler.job_ports_unknown", extra={"error": exc.reason})
            return ()
        ports = {p.port: p.proto for j in (remote.jobs if remote else []) for p in j.ports}
        return tuple(manifests.JobPort(port, proto) for port, proto in sorted(ports.items()))

    def _drop_claim(self, deployment_id: str) -> None:
        """A claim that never reached Kubernetes: release at once."""
        with self.db.connection() as conn:
            claims.release(conn, deployment_id)

    # undeploy ----------------------------------------------------------------------------

    def undeploy(
        self, deployment_id: str, *, tell_validator: bool = True, reason: str = ""
    ) -> bool:
        """True once the deployment is gone (GPUs released, row deleted); False when its pods
        are still there after `undeploy_wait_s` (reconcile finishes it; GPUs stay claimed)."""
        with self.db.connection() as conn:
            held = claims.mark_terminating(conn, deployment_id)
        if held is None:
            return True
        log.info("scheduler.undeploy", extra={"deployment_id": deployment_id, "reason": reason})
        if tell_validator and held.instance_id:
            api = self.api_of(held.validator)
            if api is not None:
                try:
                    self.validator.delete_instance(api, held.chute_id, held.instance_id)
                except ValidatorError as exc:  # reconcile removes it remotely later
                    log.warning("scheduler.instance_delete_failed", extra={"error": exc.reason})
        self.kube.delete_deployment(deployment_id)
        if not self._pods_gone(deployment_id):
            log.warning("scheduler.pods_remain", extra={"deployment_id": deployment_id})
            return False
        with self.db.connection() as conn:
            claims.release(conn, deployment_id)
        with self._lock:
            self._disk.pop(held.server_name, None)
        return True

    def _pods_gone(self, deployment_id: str) -> bool:
        deadline = time.monotonic() + self.settings.undeploy_wait_s
        pause = 0.05
        while self.kube.deployment_pods(deployment_id):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(2.0, pause * 2)
        return True

    # autoscale ---------------------------------------------------------------------------

    def refresh_remote(self) -> None:
        """Metrics, utilization and rolling updates of every validator; a validator whose
        read fails keeps its previous figures."""
        metrics = dict(self.remote.metrics)
        util = dict(self.remote.utilization)
        rolling: set[str] = set()
        for v in self.settings.validators.supported:
            try:
                m = self.validator.metrics(v.api)
                u = self.validator.utilization(v.api)
                r = self.validator.rolling_updates(v.api)
            except ValidatorError as exc:
                log.warning(
                    "scheduler.remote_stale", extra={"validator": v.hotkey, "error": exc.reason}
                )
                rolling |= self.remote.rolling  # not attributable per validator: keep them
                continue
            metrics.update({x.chute_id: ChuteMetrics(**x.model_dump()) for x in m})
            util.update({x.chute_id: Utilization(**x.model_dump()) for x in u})
            rolling |= r
        self.remote = RemoteCache(metrics, util, rolling, self.clock())

    def autoscale_intents(self) -> list[tuple[str, int]]:
        snap = self.snapshot()
        return [(i.chute_id, i.delta) for i in self.strategy.autoscale(snap)]

    def apply_intent(self, chute_id: str, delta: int) -> None:
        snap = self.snapshot()
        chute = snap.chutes.get(chute_id)
        if chute is None:
            return
        if delta > 0:
            self.place(PlacementRequest(chute_id, chute.gpu_count), snap=snap)
        else:
            victim = self.strategy.choose_scale_down(snap, chute_id)
            if victim is not None:
                self.undeploy(victim, reason="scale down")
