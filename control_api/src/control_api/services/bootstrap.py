"""add-node (contract §2.4, §2.5): checks and the server-row lock up front, then a background
thread that the SSE stream only tails, so a client disconnect never cancels or rolls it back."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from control_api.clients.graval import GravalClient, GravalError
from control_api.clients.k8s import (
    GravalSpec,
    KubeApiError,
    KubeClient,
    KubeUnavailable,
    NodeInfo,
)
from control_api.clients.validator import ValidatorClient, ValidatorError
from control_api.core.config import Settings, ValidatorConfig
from control_api.db import queries
from control_api.db.pool import Database

log = logging.getLogger(__name__)
MAX_NICE = 56


class AddNodeRefused(Exception):
    """Refused before streaming; answered as JSON with `status`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _Failed(Exception):
    pass


@dataclass
class Progress:
    """Thread-safe event log of one attempt; readers tail it by index."""

    events: list[tuple[str, str]] = field(default_factory=list)
    done: bool = False
    ok: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def emit(self, message: str) -> None:
        with self._cond:
            self.events.append((datetime.now(UTC).isoformat(), message))
            self._cond.notify_all()

    def finish(self, ok: bool) -> None:
        with self._cond:
            self.done, self.ok = True, ok
            self._cond.notify_all()

    def wait_from(self, index: int, timeout_s: float) -> tuple[list[tuple[str, str]], bool]:
        with self._cond:
            if len(self.events) <= index and not self.done:
                self._cond.wait(timeout_s)
            return self.events[index:], self.done


@dataclass(frozen=True)
class AddNodeRequest:
    name: str
    validator: str
    hourly_cost: float
    gpu_short_ref: str


@dataclass
class Attempt:
    request: AddNodeRequest
    validator: ValidatorConfig
    node: NodeInfo
    spec: GravalSpec
    progress: Progress
    started: float


def nice_name(node: str) -> str:
    return node.replace(".", "-")


def cpu_per_gpu(cpus: int, gpus: int) -> int:
    return 1 if cpus - 2 <= gpus else min(4, (cpus - 2) // gpus)


def memory_per_gpu(mem_gib: float, gpus: int, gpu_memory_mib: int | None) -> int:
    if mem_gib - 6 <= gpus:
        return 1
    by_host = math.floor((mem_gib - 6) * 0.8 / gpus)
    return by_host if gpu_memory_mib is None else min(gpu_memory_mib // 1024, by_host)


class AddNodeService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        kube: KubeClient,
        validator: ValidatorClient,
        graval: GravalClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._s = settings
        self._db = db
        self._kube = kube
        self._validator = validator
        self._graval = graval
        self._clock = clock
        self._running: dict[str, Attempt] = {}
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    # -- before streaming -------------------------------------------------------------
    def prepare(self, req: AddNodeRequest) -> Attempt:
        """Every check, then the server row (the lock). A Kubernetes error is answered with
        its reason (KubeApiError.answer_status; 503 when the API does not answer); all
        Kubernetes calls here read or dry-run, so a refusal changes nothing."""
        vcfg = self._s.validators.get(req.validator)
        if vcfg is None:
            raise AddNodeRefused(400, f"Validator {req.validator} is not configured")
        try:
            return self._prepare(req, vcfg)
        except KubeUnavailable as exc:
            raise AddNodeRefused(503, str(exc)) from exc
        except KubeApiError as exc:
            raise AddNodeRefused(exc.answer_status, str(exc)) from exc

    def _prepare(self, req: AddNodeRequest, vcfg: ValidatorConfig) -> Attempt:
        node = self._kube.get_node(req.name)
        if node is None:
            raise AddNodeRefused(404, f"Node {req.name} not found in the cluster")
        taken = AddNodeRefused(409, f"Server with name={req.name} is already provisioned!")
        with self._lock:
            if req.name in self._running:
                raise taken
        with self._db.connection() as conn:
            if queries.server_exists(conn, req.name, node.uid):
                raise taken
        try:
            supported = self._validator.supported_gpus(vcfg.api)
        except ValidatorError as exc:
            raise AddNodeRefused(502, exc.reason) from exc
        if req.gpu_short_ref not in supported:
            raise AddNodeRefused(400, f"gpu_short_ref {req.gpu_short_ref} is not supported")
        gpus = self._preconditions(req, node)
        spec = GravalSpec(
            node=req.name,
            nice=nice_name(req.name),
            image=self._s.graval_bootstrap_image,
            validator=vcfg.hotkey,
            miner_ss58=self._s.miner_ss58,
            gpu_count=gpus,
            cpu=gpus * cpu_per_gpu(node.cpus, gpus),
            memory_gi=gpus * memory_per_gpu(node.memory_gib, gpus, node.gpu_memory_mib),
            remote_token_hosts=_host(vcfg.api),
            runtime_class=self._s.graval_runtime_class,
        )
        self._kube.check_graval(spec, self._node_labels(req, vcfg))
        new = queries.NewServer(
            server_id=node.uid,
            validator=vcfg.hotkey,
            name=req.name,
            ip_address=node.external_ip,
            gpu_count=gpus,
            cpu_per_gpu=cpu_per_gpu(node.cpus, gpus),
            memory_per_gpu=memory_per_gpu(node.memory_gib, gpus, node.gpu_memory_mib),
            hourly_cost=req.hourly_cost,
            labels=node.labels,
        )
        with self._lock:
            if req.name in self._running:
                raise taken
            try:
                with self._db.connection() as conn:
                    queries.insert_server(conn, new)
            except queries.Conflict as exc:
                raise taken from exc
            attempt = Attempt(req, vcfg, node, spec, Progress(), self._clock())
            self._running[req.name] = attempt
        return attempt

    def _preconditions(self, req: AddNodeRequest, node: NodeInfo) -> int:
        nice = nice_name(req.name)
        if len(nice) > MAX_NICE:
            raise AddNodeRefused(400, f"node name longer than {MAX_NICE} characters")
        if not node.ready:
            raise AddNodeRefused(400, "node is not Ready")
        if not node.external_ip:
            raise AddNodeRefused(400, "node has no chutes/external-ip label")
        count = node.gpu_count_label
        if count is None or not 1 <= count <= 10:
            raise AddNodeRefused(400, "node has no valid nvidia.com/gpu.count label (1..10)")
        if node.gpu_capacity != count:
            raise AddNodeRefused(
                400, f"nvidia.com/gpu capacity {node.gpu_capacity} differs from gpu.count {count}"
            )
        busy = self._kube.node_busy(req.name)
        if busy:
            raise AddNodeRefused(400, busy)
        runtime_class = self._s.graval_runtime_class
        if not self._kube.runtime_class_exists(runtime_class):
            raise AddNodeRefused(
                400,
                f"RuntimeClass {runtime_class} does not exist in the cluster"
                " (GRAVAL_RUNTIME_CLASS names the NVIDIA runtime class)",
            )
        return count

    @staticmethod
    def _node_labels(req: AddNodeRequest, vcfg: ValidatorConfig) -> dict[str, str]:
        return {
            "gpu-short-ref": req.gpu_short_ref,
            "chutes/validator": vcfg.hotkey,
            "chutes/worker": "true",
        }

    # -- background -------------------------------------------------------------------
    def start(self, attempt: Attempt) -> None:
        thread = threading.Thread(
            target=self._run, args=(attempt,), name=f"add-node-{attempt.request.name}", daemon=True
        )
        self.threads.append(thread)
        thread.start()

    def _heartbeat(self, attempt: Attempt, last: list[float], message: str) -> None:
        now = self._clock()
        if now - last[0] >= self._s.sse_heartbeat_s:
            attempt.progress.emit(message)
            last[0] = now

    def _run(self, attempt: Attempt) -> None:
        req, vcfg, node, spec, progress = (
            attempt.request,
            attempt.validator,
            attempt.node,
            attempt.spec,
            attempt.progress,
        )
        registered: list[str] = []
        ok = False
        graval_created = False
        try:
            progress.emit(f"adding node {req.name} to the inventory")
            self._kube.label_node(req.name, self._node_labels(req, vcfg))
            progress.emit(f"tracked server {node.uid}, provisioning graval bootstrap")
            graval_created = True
            port = self._kube.create_graval(spec)
            with self._db.connection() as conn:
                queries.set_verification_port(conn, node.uid, port)
            self._wait_graval(attempt)
            progress.emit("gathering device info")
            try:
                devices = self._graval.devices(self._kube.graval_url(spec))
            except GravalError as exc:
                raise _Failed(str(exc)) from exc
            if len(devices) != spec.gpu_count:
                raise _Failed(f"found {len(devices)} GPUs, expected {spec.gpu_count}")
            dumped = [d.model_dump() for d in devices]
            with self._db.connection() as conn:
                queries.insert_gpus(conn, node.uid, vcfg.hotkey, req.gpu_short_ref, dumped)
            progress.emit(f"discovered {len(devices)} GPUs [{devices[0].name}]")
            body = {
                "server_id": node.uid,
                "nodes": [
                    {
                        **d,
                        "device_index": i,
                        "gpu_identifier": req.gpu_short_ref,
                        "verification_host": node.external_ip,
                        "verification_port": port,
                    }
                    for i, d in enumerate(dumped)
                ],
            }
            try:
                reply = self._validator.register_nodes(vcfg.api, body)
            except ValidatorError as exc:
                raise _Failed(exc.reason) from exc
            registered = [d["uuid"] for d in dumped]
            seeds = {n.seed for n in reply.nodes}
            if len(seeds) != 1:
                raise _Failed("validator returned inconsistent seeds")
            seed = seeds.pop()
            with self._db.connection() as conn:
                queries.set_seed(conn, node.uid, seed)
            progress.emit(f"advertised node to the validator, received seed {seed}")
            self._poll_verification(attempt, reply.task_id)
            with self._db.connection() as conn:
                queries.mark_ready(conn, node.uid)
            progress.emit("GPU verification succeeded")
            secs = round(self._clock() - attempt.started, 1)
            progress.emit(f"completed server bootstrapping in {secs} seconds!")
            ok = True
        except _Failed as exc:
            progress.emit(f"bootstrap failed: {exc}")
        except (KubeApiError, KubeUnavailable) as exc:
            log.warning("add_node.kubernetes_error", extra={"node": req.name, "error": str(exc)})
            progress.emit(f"bootstrap failed: {exc}"[:500])
        except Exception as exc:  # noqa: BLE001 - any error must still clean up and report
            log.exception("add_node.error", extra={"node": req.name})
            progress.emit(f"bootstrap failed: internal error ({type(exc).__name__})")
        finally:
            # The outcome event was the last one: end the stream now, not after the cleanup
            # (graval pod deletion waits up to 120 s); `_running` still answers 409 meanwhile.
            progress.finish(ok)
            if not ok:
                try:
                    self._cleanup_failed(attempt, registered)
                except Exception:  # noqa: BLE001 - the graval objects and the name still go
                    log.exception("add_node.cleanup_error", extra={"node": req.name})
            if graval_created:
                try:
                    self._kube.delete_graval(spec)
                except Exception:  # noqa: BLE001
                    log.exception("add_node.graval_cleanup_error", extra={"node": req.name})
            with self._lock:
                self._running.pop(req.name, None)
            log.info("add_node.finished", extra={"node": req.name, "ok": ok})

    def _wait_graval(self, attempt: Attempt) -> None:
        deadline = self._clock() + self._s.graval_bootstrap_timeout
        last = [self._clock()]
        while True:
            state, reason = self._kube.graval_state(attempt.spec)
            if state == "ready":
                return
            if state == "failed":
                raise _Failed(reason or "graval bootstrap failed")
            if self._clock() > deadline:
                raise _Failed("graval bootstrap did not become ready in time")
            self._heartbeat(attempt, last, "waiting for graval bootstrap to become ready")
            time.sleep(self._s.verification_poll_s)

    def _poll_verification(self, attempt: Attempt, task_id: str) -> None:
        deadline = self._clock() + self._s.graval_bootstrap_timeout
        attempt.progress.emit("waiting for GPU verification")
        last = [self._clock()]
        while True:
            try:
                status = self._validator.verification_status(attempt.validator.api, task_id)
            except ValidatorError as exc:
                raise _Failed(exc.reason) from exc
            if status.status == "verified":
                return
            if status.status in ("error", "failed"):
                why = status.error or (status.detail if isinstance(status.detail, str) else None)
                raise _Failed(f"verification {status.status}: {why or 'no detail'}"[:300])
            if self._clock() > deadline:
                raise _Failed("GPU verification timed out")
            self._heartbeat(attempt, last, "waiting for GPU verification")
            time.sleep(self._s.verification_poll_s)

    def _cleanup_failed(self, attempt: Attempt, registered: list[str]) -> None:
        for gpu_id in registered:
            try:
                self._validator.delete_node(attempt.validator.api, gpu_id)
            except ValidatorError:
                log.warning("add_node.validator_cleanup_failed", extra={"gpu_id": gpu_id})
        with self._db.connection() as conn:
            queries.delete_server(conn, attempt.node.uid)


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].split(":", 1)[0]


def sse_event(timestamp: str, message: str) -> bytes:
    payload: dict[str, Any] = {"timestamp": timestamp, "message": message}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
