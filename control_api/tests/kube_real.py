"""The control service against a real Kubernetes API server (the control-plane fixture,
tests/controlplane.py): the namespace, RuntimeClass and RBAC a cluster would have, Node
objects with GPU capacity, and a stand-in for the kubelet's status reports.

No kubelet runs, so nothing a kubelet does happens by itself: a Node's status (capacity,
Ready) is written here, a graval Pod's status (running and ready, or crashing) is written by
FakeKubelet, and a Pod bound to a node is only removed once FakeKubelet confirms its
deletion (a kubelet's final grace-0 delete). Everything else is the real API server and
controller manager: validation, admission, RBAC, NodePort allocation, Job -> Pod, foreground
deletion and garbage collection.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from control_api.clients.k8s import RealKubeClient

from tests.controlplane import ControlPlane

NAMESPACE = "chutes"
SERVICE_ACCOUNT = "control-api"
SA_USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
RUNTIME_CLASS = "nvidia-container-runtime"
OPERATOR_ACCOUNT = "chutes-operator"  # KUBECONFIG_SERVICE_ACCOUNT in the tests
RBAC_MANIFEST = Path(__file__).resolve().parents[1] / "k8s" / "rbac.yaml"

BASE = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {{name: {RUNTIME_CLASS}}}
handler: nvidia
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {OPERATOR_ACCOUNT}, namespace: {NAMESPACE}}}
"""


@dataclass(frozen=True)
class Cluster:
    """The control plane, set up as the control service expects to find a cluster."""

    cp: ControlPlane
    kubeconfig: Path  # the control service's ServiceAccount (control_api/k8s/rbac.yaml)

    def client(self, **kwargs: Any) -> RealKubeClient:
        return RealKubeClient(NAMESPACE, kubeconfig=str(self.kubeconfig), **kwargs)

    def client_as(self, service_account: str, directory: Path) -> RealKubeClient:
        """The real client with another ServiceAccount's token (created if missing)."""
        self.cp.kubectl("create", "serviceaccount", service_account, "-n", NAMESPACE, check=False)
        config = self.cp.token_kubeconfig(
            directory / f"{service_account}.kubeconfig",
            self.cp.token(NAMESPACE, service_account),
            NAMESPACE,
        )
        return RealKubeClient(NAMESPACE, kubeconfig=str(config))

    def get(self, *args: str) -> Any:
        """`kubectl get ... -o json` as the admin, parsed; None when it does not exist."""
        done = self.cp.kubectl("get", *args, "-n", NAMESPACE, "-o", "json", check=False)
        if done.returncode != 0:
            assert "NotFound" in done.stderr, done.stderr
            return None
        return json.loads(done.stdout)

    def add_node(
        self,
        name: str,
        *,
        gpus: int = 2,
        cpu: str = "32",
        memory: str = "263928756Ki",
        ready: bool = True,
        labels: dict[str, str] | None = None,
    ) -> str:
        """A Node object as a joined GPU node looks (labels from Ansible and GPU feature
        discovery, capacity from the device plugin, Ready from the kubelet); its UID."""
        node_labels = {
            "chutes/external-ip": "203.0.113.10",
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/gpu.memory": "143771",
            **(labels or {}),
        }
        manifest = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": node_labels},
        }
        self.cp.apply(json.dumps(manifest))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        resources = {"cpu": cpu, "memory": memory, "nvidia.com/gpu": str(gpus), "pods": "110"}
        condition = {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "written by the test (no kubelet runs)",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        status = {"capacity": resources, "allocatable": resources, "conditions": [condition]}
        self.cp.kubectl(
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
        node = json.loads(self.cp.kubectl("get", "node", name, "-o", "json").stdout)
        return str(node["metadata"]["uid"])


def set_up(cp: ControlPlane, directory: Path) -> Cluster:
    cp.apply(BASE)
    cp.apply(RBAC_MANIFEST.read_text())
    deadline = time.monotonic() + 30  # pods need the namespace's default ServiceAccount
    while cp.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")[0] != 200:
        assert time.monotonic() < deadline, "no default ServiceAccount in the namespace"
        time.sleep(0.1)
    token = cp.token(NAMESPACE, SERVICE_ACCOUNT, 6 * 3600)
    kubeconfig = cp.token_kubeconfig(directory / "control-api.kubeconfig", token, NAMESPACE)
    return Cluster(cp, kubeconfig)


class FakeKubelet:
    """Writes what a kubelet would report for the namespace's graval pods, from a watch:
    ``mode`` "ready" (Running, container ready), "started" (Running, container not ready
    yet), "crash" (CrashLoopBackOff after
    ``restarts`` restarts) or "silent" (nothing: the pod stays Pending). A pod being deleted
    is removed (grace 0) unless ``confirm_deletes`` is False, as when the node's kubelet is
    gone."""

    def __init__(self, cp: ControlPlane, mode: str = "ready", confirm_deletes: bool = True):
        from kubernetes import client, config

        self._core = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig)))
        self.mode = mode
        self.restarts = 1
        self.confirm_deletes = confirm_deletes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)

    def __enter__(self) -> FakeKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            stream = watch.Watch()
            for event in stream.stream(
                self._core.list_namespaced_pod,
                NAMESPACE,
                label_selector="app=graval",
                timeout_seconds=1,
            ):
                self._handle(event["object"])
                if self._stop.is_set():
                    stream.stop()

    def _handle(self, pod: Any) -> None:
        from kubernetes.client.exceptions import ApiException

        name = pod.metadata.name
        try:
            if pod.metadata.deletion_timestamp is not None:
                if self.confirm_deletes:
                    self._core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
                return
            status = self._status(pod)
            if status is not None:
                self._core.patch_namespaced_pod_status(name, NAMESPACE, {"status": status})
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone meanwhile, or a newer version exists
                raise

    def _status(self, pod: Any) -> dict[str, Any] | None:
        current = pod.status.container_statuses or []
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        container: dict[str, Any] = {
            "name": "graval",
            "image": pod.spec.containers[0].image,
            "imageID": "",
            "restartCount": 0,
        }
        if self.mode == "ready" and not any(c.ready for c in current):
            container |= {"ready": True, "started": True, "state": {"running": {"startedAt": now}}}
            ready = {"type": "Ready", "status": "True", "lastTransitionTime": now}
            return {"phase": "Running", "conditions": [ready], "containerStatuses": [container]}
        if self.mode == "started" and not any(c.state and c.state.running for c in current):
            container |= {"ready": False, "started": True, "state": {"running": {"startedAt": now}}}
            return {"phase": "Running", "containerStatuses": [container]}
        crashing = any(c.state and c.state.waiting for c in current)
        if self.mode == "crash" and not crashing:
            waiting = {"reason": "CrashLoopBackOff", "message": "back-off restarting"}
            state = {"waiting": waiting}
            container |= {"ready": False, "restartCount": self.restarts, "state": state}
            return {"phase": "Running", "containerStatuses": [container]}
        return None
