"""The whole deploy with its waits, on an API server whose controllers run (Deployments,
ReplicaSets, DaemonSets, Jobs) and where a stand-in scheduler and kubelet (a thread of this
test, named as such) bind each pod to its node and report it Running and Ready, or Succeeded
for Job pods: the migrations Job completes before the Deployments roll, every workload is
waited for until it is available, and a rerun changes nothing and restarts no pod."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.components.conftest import Deploy, read_secrets, recap
from tests.k8s import controlplane
from tests.k8s.controlplane import ControlPlane

NS = "chutes"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_node(cp: ControlPlane, name: str, labels: dict[str, str]) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
    cp.apply(json.dumps(node))
    resources = {"cpu": "16", "memory": "64Gi", "pods": "110"}
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "written by the test (no kubelet runs)",
        "lastHeartbeatTime": _now(),
        "lastTransitionTime": _now(),
    }
    status = {"capacity": resources, "allocatable": resources, "conditions": [ready]}
    # Admission taints a new node not-ready; the node lifecycle controller, which would lift
    # it once the node is Ready, does not run here (tests/k8s/README.md).
    cp.kubectl("patch", "node", name, "--type=merge", "-p", '{"spec": {"taints": []}}')
    cp.kubectl(
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


class StandInKubelet:
    """Stand-in scheduler and kubelet for namespace chutes: binds pending pods (the node a
    DaemonSet pod's affinity names, else the nodeSelector's hostname), reports them Running
    and Ready (Job pods: Succeeded), and confirms deletions."""

    def __init__(self, cp: ControlPlane) -> None:
        from kubernetes import client, config  # type: ignore[import-untyped]

        self._api = config.new_client_from_config(str(cp.kubeconfig))
        self._core = client.CoreV1Api(self._api)
        self._client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stand-in-kubelet", daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> StandInKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                for pod in self._core.list_namespaced_pod(NS).items:
                    self._handle(pod)
            except Exception as exc:  # noqa: BLE001 - reported by the test, not lost
                self.errors.append(repr(exc))

    @staticmethod
    def _node(pod: Any) -> str:
        affinity = pod.spec.affinity
        if affinity and affinity.node_affinity:
            required = affinity.node_affinity.required_during_scheduling_ignored_during_execution
            for term in required.node_selector_terms:
                for field in term.match_fields or []:
                    if field.key == "metadata.name":
                        return str(field.values[0])
        return str((pod.spec.node_selector or {}).get("kubernetes.io/hostname", "cpu-0"))

    def _handle(self, pod: Any) -> None:
        from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

        c = self._client
        name = pod.metadata.name
        try:
            if pod.metadata.deletion_timestamp is not None:
                self._core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
                return
            if not pod.spec.node_name:
                binding = c.V1Binding(
                    metadata=c.V1ObjectMeta(name=name),
                    target=c.V1ObjectReference(kind="Node", name=self._node(pod)),
                )
                self._core.create_namespaced_binding(NS, binding, _preload_content=False)
                return
            if pod.status.phase in ("Running", "Succeeded"):
                return
            job = any(o.kind == "Job" for o in pod.metadata.owner_references or [])
            containers = []
            for spec in pod.spec.containers:
                state = (
                    {"terminated": {"exitCode": 0, "reason": "Completed"}}
                    if job
                    else {"running": {"startedAt": _now()}}
                )
                containers.append(
                    {
                        "name": spec.name,
                        "image": spec.image,
                        "imageID": "",
                        "ready": not job,
                        "restartCount": 0,
                        "state": state,
                    }
                )
            ready = {
                "type": "Ready",
                "status": "False" if job else "True",
                "lastTransitionTime": _now(),
            }
            status = {
                "phase": "Succeeded" if job else "Running",
                "startTime": _now(),
                "conditions": [ready],
                "containerStatuses": containers,
            }
            self._core.patch_namespaced_pod_status(name, NS, {"status": status})
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise


@pytest.fixture(scope="module")
def cluster() -> Iterator[ControlPlane]:
    try:
        cp = controlplane.start(controller_manager=True)
    except controlplane.BinariesMissing as exc:
        pytest.fail(str(exc))
    try:
        add_node(cp, "cpu-0", {"kubernetes.io/hostname": "cpu-0"})
        add_node(cp, "gpu-0", {"kubernetes.io/hostname": "gpu-0", "chutes/gpu-node": "true"})
        yield cp
    finally:
        cp.stop()


def _pods(cp: ControlPlane) -> dict[str, str]:
    """Pod UID -> its owner's name, of every pod in the namespace."""
    items = json.loads(cp.kubectl("get", "pods", "-n", NS, "-o", "json").stdout)["items"]
    return {p["metadata"]["uid"]: p["metadata"]["name"] for p in items}


def test_deploy_waits_for_every_workload_and_a_rerun_restarts_nothing(
    deploy: Deploy, cluster: ControlPlane, tmp_path: Path
) -> None:
    extra = {
        "chutes_kubeconfig": str(cluster.kubeconfig),
        "miner_common_k8s_client_install": False,
        "miner_postgres_data_dir": str(tmp_path / "postgres-data"),
        "miner_wait_timeout": 120,
    }
    with StandInKubelet(cluster) as kubelet:
        rc, first = deploy.run(extra_vars=extra)
        assert rc == 0, first[-5000:]
        pods, secrets = _pods(cluster), read_secrets(cluster)
        rc, second = deploy.run(extra_vars=extra)
        assert rc == 0, second[-5000:]
    assert kubelet.errors == []
    assert "Wait for each workload to roll out" in first
    assert recap(second)["changed"] == 0, second[-5000:]
    assert _pods(cluster) == pods  # the same pods: nothing restarted
    assert read_secrets(cluster) == secrets  # generated once, read back, kept
    names = sorted(pods.values())
    # postgres, redis, api, registry-auth, 2 relays, gepetto, the proxy on gpu-0, the migrations pod
    daemonsets = cluster.kubectl("get", "ds,rs,job", "-n", NS, "-o", "wide").stdout
    events = cluster.kubectl("get", "events", "-n", NS).stdout
    assert len(names) == 9, f"{names}\n{daemonsets}\n{events[-3000:]}"
    assert sum(n.startswith("relay-") for n in names) == 2
    assert sum(n.startswith("migrate-") for n in names) == 1
    assert sum(n.startswith("registry-") and not n.startswith("registry-auth-") for n in names) == 1
    deployments = json.loads(cluster.kubectl("get", "deploy", "-n", NS, "-o", "json").stdout)
    for d in deployments["items"]:
        assert d["status"].get("availableReplicas") == d["spec"]["replicas"], d["metadata"]["name"]
