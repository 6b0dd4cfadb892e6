"""Kubernetes for the scheduler (runtime contract §7.3, §9): the objects of chute deployments,
their pods, and the nodes' health and free disk. `ChuteKube` is the narrow interface;
`RealChuteKube` extends the API's `RealKubeClient` (same configuration, timeouts and error
mapping: KubeApiError / KubeUnavailable); tests use an in-memory stand-in.

Every call is idempotent: creating what exists is success (an existing Service answers its
node ports), deleting what is gone is success, so a handler retried after a crash converges.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from control_api.clients.k8s import KubeApiError, NodeInfo, RealKubeClient, _quantity

log = logging.getLogger(__name__)
JobState = Literal["active", "succeeded", "failed"]
DISK_RESERVE_GB = 20.0
_CHUTE_SELECTOR = "chutes/chute=true"


@dataclass(frozen=True)
class ChutePod:
    name: str
    deployment_id: str
    phase: str
    node: str | None
    visible_devices: str | None  # the chute container's NVIDIA_VISIBLE_DEVICES


@dataclass(frozen=True)
class GravalJob:
    """A GraVal bootstrap Job (label `app=graval`) that add-node created."""

    name: str
    node: str  # its `graval-node` label
    age_s: float


@dataclass(frozen=True)
class ChuteObjects:
    """What exists in the namespace, by deployment id (Jobs, Services) and name (ConfigMaps)."""

    jobs: Mapping[str, JobState]
    services: frozenset[str]
    configmaps: frozenset[str]


class ChuteKube(Protocol):
    def ensure_code(self, configmap: dict[str, Any]) -> None:
        """Create the chute's code ConfigMap; one that exists is left as it is."""
        ...

    def delete_code(self, name: str) -> None: ...

    def create_service(self, service: dict[str, Any]) -> dict[int, int]:
        """Create the deployment's Service (or find it) and return port -> nodePort."""
        ...

    def create_job(self, job: dict[str, Any]) -> None:
        """Create the deployment's Job; one that exists is left as it is."""
        ...

    def delete_deployment(self, deployment_id: str) -> None:
        """Delete the Job (foreground: its pods first) and the Service; gone is fine."""
        ...

    def deployment_pods(self, deployment_id: str) -> list[ChutePod]: ...

    def chute_pods(self) -> list[ChutePod]:
        """Every live (not Succeeded/Failed) chute pod of the namespace."""
        ...

    def chute_objects(self) -> ChuteObjects: ...

    def nodes(self) -> list[NodeInfo]: ...

    def graval_jobs(self) -> list[GravalJob]:
        """The namespace's GraVal bootstrap Jobs."""
        ...

    def delete_graval_objects(self, job_name: str) -> None:
        """Delete the Job (foreground) and its Service (`k8s.graval_service_name`); gone is
        fine. RealChuteKube has it from RealKubeClient, which add-node uses too."""
        ...

    def node_free_disk_gb(self, node: str) -> float | None:
        """Allocatable ephemeral storage minus the requests of the namespace's live pods on the
        node, minus a 20 GB reserve; None when the node or its figure is unknown."""
        ...


def _node_info(node: Any) -> NodeInfo:
    cap = node.status.capacity or {}
    ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
    gpus = str(cap.get("nvidia.com/gpu", "0"))
    return NodeInfo(
        name=node.metadata.name,
        uid=node.metadata.uid,
        labels=dict(node.metadata.labels or {}),
        ready=ready,
        gpu_capacity=int(gpus) if gpus.isdigit() else 0,
        cpus=int(_quantity(str(cap.get("cpu", "0"))) + 1e-9),
        memory_gib=_quantity(str(cap.get("memory", "0"))) / 2**30,
    )


def _pod(pod: Any) -> ChutePod:
    devices = None
    for c in pod.spec.containers or []:
        if c.name == "chute":
            for e in c.env or []:
                if e.name == "NVIDIA_VISIBLE_DEVICES":
                    devices = e.value
    labels = pod.metadata.labels or {}
    return ChutePod(
        name=pod.metadata.name,
        deployment_id=labels.get("chutes/deployment-id", ""),
        phase=str(pod.status.phase if pod.status else "Unknown"),
        node=pod.spec.node_name,
        visible_devices=devices,
    )


class RealChuteKube(RealKubeClient):
    """The scheduler's calls on the `kubernetes` package, through RealKubeClient's `_call`."""

    def _gone_ok(self, action: str, method: Any, *args: Any, **kwargs: Any) -> None:
        try:
            self._call(action, method, *args, **kwargs)
        except KubeApiError as exc:
            if exc.status != 404:
                raise

    def ensure_code(self, configmap: dict[str, Any]) -> None:
        name = configmap["metadata"]["name"]
        try:
            self._call(
                f"create ConfigMap {name}",
                self._core.create_namespaced_config_map,
                self._ns,
                configmap,
            )
        except KubeApiError as exc:
            if exc.status != 409:
                raise

    def delete_code(self, name: str) -> None:
        self._gone_ok(
            f"delete ConfigMap {name}", self._core.delete_namespaced_config_map, name, self._ns
        )

    def create_service(self, service: dict[str, Any]) -> dict[int, int]:
        name = service["metadata"]["name"]
        try:
            created = self._call(
                f"create Service {name}", self._core.create_namespaced_service, self._ns, service
            )
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            created = self._call(
                f"read Service {name}", self._core.read_namespaced_service, name, self._ns
            )
        return {int(p.port): int(p.node_port) for p in created.spec.ports}

    def create_job(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        try:
            self._call(f"create Job {name}", self._batch.create_namespaced_job, self._ns, job)
        except KubeApiError as exc:
            if exc.status != 409:
                raise

    def delete_deployment(self, deployment_id: str) -> None:
        body = {"propagationPolicy": "Foreground"}
        job, svc = f"chute-{deployment_id}", f"chute-service-{deployment_id}"
        self._gone_ok(
            f"delete Job {job}", self._batch.delete_namespaced_job, job, self._ns, body=body
        )
        self._gone_ok(f"delete Service {svc}", self._core.delete_namespaced_service, svc, self._ns)

    def _pods(self, selector: str, field_selector: str = "") -> list[ChutePod]:
        pods = self._call(
            f"list Pods {selector}",
            self._core.list_namespaced_pod,
            self._ns,
            label_selector=selector,
            field_selector=field_selector,
        )
        return [_pod(p) for p in pods.items]

    def deployment_pods(self, deployment_id: str) -> list[ChutePod]:
        return self._pods(f"chutes/deployment-id={deployment_id}")

    def chute_pods(self) -> list[ChutePod]:
        return self._pods(_CHUTE_SELECTOR, "status.phase!=Succeeded,status.phase!=Failed")

    def chute_objects(self) -> ChuteObjects:
        jobs = self._call(
            "list chute Jobs",
            self._batch.list_namespaced_job,
            self._ns,
            label_selector=_CHUTE_SELECTOR,
        )
        states: dict[str, JobState] = {}
        for j in jobs.items:
            dep = (j.metadata.labels or {}).get("chutes/deployment-id")
            if not dep:
                continue
            status = j.status
            if status and status.failed:
                states[dep] = "failed"
            elif status and status.succeeded:
                states[dep] = "succeeded"
            else:
                states[dep] = "active"
        services = self._call(
            "list chute Services",
            self._core.list_namespaced_service,
            self._ns,
            label_selector=_CHUTE_SELECTOR,
        )
        maps = self._call(
            "list chute code ConfigMaps",
            self._core.list_namespaced_config_map,
            self._ns,
            label_selector="chutes/chute-id",
        )
        return ChuteObjects(
            jobs=states,
            services=frozenset(
                (s.metadata.labels or {}).get("chutes/deployment-id", "") for s in services.items
            )
            - {""},
            configmaps=frozenset(
                m.metadata.name for m in maps.items if m.metadata.name.startswith("chute-code-")
            ),
        )

    def nodes(self) -> list[NodeInfo]:
        listed = self._call("list Nodes", self._core.list_node)
        return [_node_info(n) for n in listed.items]

    def graval_jobs(self) -> list[GravalJob]:
        jobs = self._call(
            "list GraVal Jobs",
            self._batch.list_namespaced_job,
            self._ns,
            label_selector="app=graval",
        )
        now = datetime.now(UTC)
        return [
            GravalJob(
                name=j.metadata.name,
                node=(j.metadata.labels or {}).get("graval-node", ""),
                age_s=(now - j.metadata.creation_timestamp).total_seconds()
                if j.metadata.creation_timestamp
                else 0.0,
            )
            for j in jobs.items
        ]

    def node_free_disk_gb(self, node: str) -> float | None:
        try:
            found = self._call(f"get Node {node}", self._core.read_node, node)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        allocatable = (found.status.allocatable or {}).get("ephemeral-storage")
        if allocatable is None:
            return None
        pods = self._call(
            f"list Pods on node {node}",
            self._core.list_namespaced_pod,  # the namespace's pods: least privilege
            self._ns,
            field_selector=f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed",
        )
        requested = 0.0
        for p in pods.items:
            for c in p.spec.containers or []:
                req = (c.resources.requests or {}) if c.resources else {}
                if "ephemeral-storage" in req:
                    requested += _quantity(str(req["ephemeral-storage"]))
        return (_quantity(str(allocatable)) - requested) / 1e9 - DISK_RESERVE_GB
