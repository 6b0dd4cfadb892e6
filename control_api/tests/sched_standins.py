"""In-memory stand-ins for the scheduler's Kubernetes (ChuteKube) and validator
(MinerValidator) interfaces, recording every call. The real classes are tested against a real
API server (test_scheduler_k8s_real.py) and a stand-in validator over HTTP
(test_scheduler_validator.py)."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from control_api.clients.k8s import KubeUnavailable, NodeInfo
from control_api.clients.k8s_chutes import ChuteObjects, ChutePod, GravalJob, JobState
from control_api.clients.miner_validator import LaunchConfig
from control_api.clients.validator import ValidatorError
from control_api.schemas.gepetto import (
    RemoteChute,
    RemoteInstance,
    RemoteMetrics,
    RemoteUtilization,
)


def node(name: str, uid: str, gpus: int = 8, **kw: Any) -> NodeInfo:
    labels = {"chutes/external-ip": "203.0.113.10", "nvidia.com/gpu.count": str(gpus)}
    labels.update(kw.pop("labels", {}))
    return NodeInfo(
        name=name,
        uid=uid,
        labels=labels,
        ready=kw.pop("ready", True),
        gpu_capacity=kw.pop("gpu_capacity", gpus),
        cpus=64,
        memory_gib=512.0,
    )


@dataclass
class MemoryChuteKube:
    """Objects by name; a Job gets one pod (Running) at once; a deleted Job's pod lingers for
    `linger_polls` pod listings (a kubelet stopping it), forever with `stuck`."""

    nodes_by_name: dict[str, NodeInfo] = field(default_factory=dict)
    configmaps: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_states: dict[str, JobState] = field(default_factory=dict)
    pods: dict[str, ChutePod] = field(default_factory=dict)  # by deployment id
    lingering: dict[str, int] = field(default_factory=dict)
    disk_gb: dict[str, float] = field(default_factory=dict)
    graval: dict[str, GravalJob] = field(default_factory=dict)  # GraVal bootstrap Jobs by name
    linger_polls: int = 0
    stuck: bool = False
    fail_create_job: Exception | None = None
    unavailable: bool = False
    calls: list[str] = field(default_factory=list)
    _ports: Any = field(default_factory=lambda: itertools.count(30000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _note(self, call: str) -> None:
        if self.unavailable:
            raise KubeUnavailable("stand-in: no API server")
        self.calls.append(call)

    def ensure_code(self, configmap: dict[str, Any]) -> None:
        with self._lock:
            self._note(f"ensure_code {configmap['metadata']['name']}")
            self.configmaps.setdefault(configmap["metadata"]["name"], configmap)

    def delete_code(self, name: str) -> None:
        with self._lock:
            self._note(f"delete_code {name}")
            self.configmaps.pop(name, None)

    def create_service(self, service: dict[str, Any]) -> dict[int, int]:
        with self._lock:
            name = service["metadata"]["name"]
            self._note(f"create_service {name}")
            if name not in self.services:
                for p in service["spec"]["ports"]:
                    p["nodePort"] = next(self._ports)
                self.services[name] = service
            return {p["port"]: p["nodePort"] for p in self.services[name]["spec"]["ports"]}

    def create_job(self, job: dict[str, Any]) -> None:
        with self._lock:
            name = job["metadata"]["name"]
            self._note(f"create_job {name}")
            if self.fail_create_job is not None:
                raise self.fail_create_job
            if name in self.jobs:
                return
            self.jobs[name] = job
            dep = job["metadata"]["labels"]["chutes/deployment-id"]
            self.job_states[dep] = "active"
            pod = job["spec"]["template"]["spec"]
            env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
            self.pods[dep] = ChutePod(
                f"{name}-pod", dep, "Running", pod["nodeName"], env["NVIDIA_VISIBLE_DEVICES"]
            )

    def delete_deployment(self, deployment_id: str) -> None:
        with self._lock:
            self._note(f"delete_deployment {deployment_id}")
            self.jobs.pop(f"chute-{deployment_id}", None)
            self.services.pop(f"chute-service-{deployment_id}", None)
            self.job_states.pop(deployment_id, None)
            if deployment_id in self.pods:
                self.lingering[deployment_id] = self.linger_polls

    def deployment_pods(self, deployment_id: str) -> list[ChutePod]:
        with self._lock:
            self._note(f"deployment_pods {deployment_id}")
            pod = self.pods.get(deployment_id)
            if pod is None:
                return []
            left = self.lingering.get(deployment_id)
            if left is not None and not self.stuck:
                if left <= 0:
                    del self.pods[deployment_id]
                    del self.lingering[deployment_id]
                    return []
                self.lingering[deployment_id] = left - 1
            return [pod]

    def chute_pods(self) -> list[ChutePod]:
        with self._lock:
            return list(self.pods.values())

    def chute_objects(self) -> ChuteObjects:
        with self._lock:
            self._note("chute_objects")
            return ChuteObjects(
                jobs=dict(self.job_states),
                services=frozenset(
                    s["metadata"]["labels"]["chutes/deployment-id"] for s in self.services.values()
                ),
                configmaps=frozenset(self.configmaps),
            )

    def nodes(self) -> list[NodeInfo]:
        self._note("nodes")
        return list(self.nodes_by_name.values())

    def node_free_disk_gb(self, node: str) -> float | None:
        self._note(f"disk {node}")
        return self.disk_gb.get(node)

    def graval_jobs(self) -> list[GravalJob]:
        self._note("graval_jobs")
        return list(self.graval.values())

    def delete_graval_objects(self, job_name: str) -> None:
        self._note(f"delete_graval_objects {job_name}")
        self.graval.pop(job_name, None)

    # test helpers
    def add_node(self, info: NodeInfo) -> None:
        self.nodes_by_name[info.name] = info

    def visible_devices(self) -> dict[str, str]:
        return {dep: p.visible_devices or "" for dep, p in self.pods.items()}


def remote_chute(chute_id: str, version: str = "1", gpu_count: int = 1, **kw: Any) -> RemoteChute:
    return RemoteChute.model_validate(
        {
            "chute_id": chute_id,
            "name": f"name-{chute_id}",
            "image": "user/img:1",
            "code": kw.pop("code", "print('hi')"),
            "filename": "app.py",
            "ref_str": "app:chute",
            "version": version,
            "supported_gpus": kw.pop("supported_gpus", ["h200"]),
            "node_selector": {"gpu_count": gpu_count},
            "chutes_version": kw.pop("chutes_version", "0.3.5"),
            **kw,
        }
    )


@dataclass
class MemoryMinerValidator:
    objects: dict[tuple[str, str], RemoteChute] = field(default_factory=dict)  # by id, version
    launch_refusals: dict[str, int] = field(default_factory=dict)  # chute_id -> status
    launches: list[tuple[str, str | None]] = field(default_factory=list)
    deleted_instances: list[tuple[str, str]] = field(default_factory=list)
    released_jobs: list[str] = field(default_factory=list)
    metric_rows: list[RemoteMetrics] = field(default_factory=list)
    util_rows: list[RemoteUtilization] = field(default_factory=list)
    rolling: set[str] = field(default_factory=set)
    # this miner's instances as `/miner/instances/` lists them, by instance id
    instance_rows: dict[str, RemoteInstance] = field(default_factory=dict)
    withdrawn: set[str] = field(default_factory=set)  # chute ids no longer listed
    down: bool = False
    cut_lists: bool = False  # the list streams break off (a partial read)
    after_instances: Callable[[], None] | None = None  # runs once the instance list is read
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, chute: RemoteChute) -> RemoteChute:
        self.objects[(chute.chute_id, chute.version)] = chute
        self.withdrawn.discard(chute.chute_id)
        return chute

    def add_instance(
        self, chute_id: str, config_id: str | None, instance_id: str | None = None, **kw: Any
    ) -> RemoteInstance:
        inst = RemoteInstance(
            instance_id=instance_id or str(uuid.uuid4()),
            chute_id=chute_id,
            config_id=config_id,
            **kw,
        )
        self.instance_rows[inst.instance_id] = inst
        return inst

    def _check(self) -> None:
        if self.down:
            raise ValidatorError("validator unreachable: ConnectError")

    def get_chute(self, api: str, chute_id: str, version: str) -> RemoteChute | None:
        self._check()
        return self.objects.get((chute_id, version))

    def launch_config(self, api: str, chute_id: str, job_id: str | None = None) -> LaunchConfig:
        self._check()
        with self._lock:
            status = self.launch_refusals.get(chute_id)
            if status is not None:
                raise ValidatorError(f"launch config refused ({status})", status)
            self.launches.append((chute_id, job_id))
        return LaunchConfig(f"jwt-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()))

    def delete_instance(self, api: str, chute_id: str, instance_id: str) -> None:
        self._check()
        with self._lock:
            self.deleted_instances.append((chute_id, instance_id))
            self.instance_rows.pop(instance_id, None)

    def release_job(self, api: str, job_id: str) -> None:
        self._check()
        with self._lock:
            self.released_jobs.append(job_id)

    def metrics(self, api: str) -> list[RemoteMetrics]:
        self._check()
        return list(self.metric_rows)

    def utilization(self, api: str) -> list[RemoteUtilization]:
        self._check()
        return list(self.util_rows)

    def rolling_updates(self, api: str) -> set[str]:
        self._check()
        return set(self.rolling)

    def _check_list(self) -> None:
        self._check()
        if self.cut_lists:
            raise ValidatorError("chutes stream interrupted: RemoteProtocolError")

    def chutes(self, api: str) -> list[RemoteChute]:
        """The newest stored version of each chute still listed (versions compare as added)."""
        self._check_list()
        with self._lock:
            latest = {c.chute_id: c for c in self.objects.values()}
        return [c for cid, c in latest.items() if cid not in self.withdrawn]

    def instances(self, api: str) -> list[RemoteInstance]:
        self._check_list()
        with self._lock:
            listed = list(self.instance_rows.values())
        if self.after_instances is not None:
            self.after_instances()  # e.g. an event handled while reconcile goes on
        return listed


@dataclass
class MemoryNodesValidator:
    """The add-node client's `delete_node`, the only call server deletion makes."""

    deleted: list[str] = field(default_factory=list)

    def supported_gpus(self, api: str) -> set[str]:
        return {"h200"}

    def register_nodes(self, api: str, body: dict[str, Any]) -> Any:
        raise NotImplementedError

    def verification_status(self, api: str, task_id: str) -> Any:
        raise NotImplementedError

    def delete_node(self, api: str, gpu_id: str) -> None:
        self.deleted.append(gpu_id)
