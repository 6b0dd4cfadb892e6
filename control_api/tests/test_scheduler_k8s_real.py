"""The scheduler against a real Kubernetes API server (the control-plane fixture: etcd,
kube-apiserver and kube-controller-manager, RBAC on), as its own ServiceAccount
(control_api/k8s/scheduler-rbac.yaml), with the real PostgreSQL and Redis.

No kubelet and no kube-scheduler run: the Job controller creates each chute pod, bound to
its node by `nodeName`, and it stays Pending (nothing pulls or starts it). A bound pod that
is deleted waits for its kubelet to confirm; `PodReaper` plays that part (grace-0 delete),
so foreground deletion of a Job completes. Node status (capacity, Ready) is written by the
test, as kube_real.Cluster.add_node does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
from bittensor_wallet import Keypair
from control_api.clients.events import EventPublisher
from control_api.clients.k8s_chutes import RealChuteKube
from control_api.scheduler import manifests

from tests.conftest import REDIS_URL, ServiceEnv, SettingsFactory
from tests.kube_real import NAMESPACE, Cluster, FakeKubelet
from tests.sched_rig import Rig, make_rig, rows
from tests.sched_standins import remote_chute
from tests.sched_validator import MinerApiStandin
from tests.seed import add_server

RBAC = Path(__file__).resolve().parents[1] / "k8s" / "scheduler-rbac.yaml"
ACCOUNT = "gepetto"
SA_USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"


@pytest.fixture(scope="module")
def scheduler_kubeconfig(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cluster.cp.apply(RBAC.read_text())
    token = cluster.cp.token(NAMESPACE, ACCOUNT, 6 * 3600)
    path = tmp_path_factory.mktemp("gepetto") / "gepetto.kubeconfig"
    return cluster.cp.token_kubeconfig(path, token, NAMESPACE)


class PodReaper(FakeKubelet):
    """What a kubelet does when a chute pod is deleted: confirm it (grace 0). Chute pods
    otherwise stay Pending (FakeKubelet itself only reports graval pods)."""

    def _run(self) -> None:
        from kubernetes.client.exceptions import ApiException

        while not self._stop.wait(0.1):
            pods = self._core.list_namespaced_pod(NAMESPACE, label_selector="chutes/chute=true")
            for pod in pods.items:
                if pod.metadata.deletion_timestamp is None:
                    continue
                try:
                    self._core.delete_namespaced_pod(
                        pod.metadata.name, NAMESPACE, grace_period_seconds=0
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        raise


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def pods_of(cluster: Cluster, dep: str) -> list[dict[str, Any]]:
    listed = cluster.get("pods", "-l", f"chutes/deployment-id={dep}")
    return list(listed["items"]) if listed else []


@pytest.fixture()
def rig(
    make_settings: SettingsFactory,
    db: psycopg2.extensions.connection,
    scheduler_kubeconfig: Path,
) -> Iterator[Rig]:
    kube = RealChuteKube(NAMESPACE, kubeconfig=str(scheduler_kubeconfig), timeout_s=10)
    r = make_rig(make_settings(), kube=kube, undeploy_wait_s=30.0)
    yield r
    r.close()


def test_deploy_and_undeploy_objects_on_a_real_api_server(
    cluster: Cluster, rig: Rig, db: psycopg2.extensions.connection
) -> None:
    uid = cluster.add_node("chute-node-a", gpus=2)
    gpus = add_server(db, uid, name="chute-node-a", gpus=2, validator=rig.validator_hotkey)
    rig.validator.add(remote_chute("c-real", gpu_count=2))
    rig.handle("chute_created", chute_id="c-real", version="1")
    [(dep, port)] = rows(db, "SELECT deployment_id, port FROM deployments")

    configmap = cluster.get("configmap", manifests.code_configmap_name("c-real", "1"))
    assert configmap["data"] == {"app.py": "print('hi')"}
    service = cluster.get("service", f"chute-service-{dep}")
    node_ports = {p["port"]: p["nodePort"] for p in service["spec"]["ports"]}
    assert service["spec"]["externalTrafficPolicy"] == "Local" and node_ports[8000] == port
    job = cluster.get("job", f"chute-{dep}")
    assert job["metadata"]["labels"]["chutes/deployment-id"] == dep
    # the Job controller made the pod; no kubelet, so it stays Pending on its node
    [pod] = wait_for("the chute pod", lambda: pods_of(cluster, dep))
    assert pod["spec"]["nodeName"] == "chute-node-a" and pod["status"]["phase"] == "Pending"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == manifests.visible_devices(tuple(sorted(gpus)))
    assert env["CHUTES_PORT_PRIMARY"] == str(port)
    assert pod["spec"]["runtimeClassName"] == "nvidia-container-runtime"

    objects = rig.kube.chute_objects()
    assert objects.jobs[dep] == "active" and dep in objects.services
    assert {p.deployment_id: p.visible_devices for p in rig.kube.chute_pods()}[dep] == env[
        "NVIDIA_VISIBLE_DEVICES"
    ]
    rig.handle("chute_created", chute_id="c-real", version="1")  # again: nothing new
    assert rows(db, "SELECT count(*) FROM deployments") == [(1,)]

    with PodReaper(cluster.cp):
        rig.handle("undeploy_requested", deployment_ids=[dep], reason="test")
        # When undeploy returns the Job is deleted or being deleted (foreground deletion);
        # the garbage collector removes the object itself a moment later, which on a loaded
        # machine can come after the handler returned (CI saw it still there once).
        job = cluster.get("job", f"chute-{dep}")
        assert job is None or job["metadata"].get("deletionTimestamp"), job
        wait_for("the Job to be gone", lambda: cluster.get("job", f"chute-{dep}") is None)
    assert cluster.get("service", f"chute-service-{dep}") is None
    assert pods_of(cluster, dep) == []
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]
    assert rows(db, "SELECT count(*) FROM gpus WHERE deployment_id IS NOT NULL") == [(0,)]


def test_undeploy_without_a_kubelet_keeps_the_gpus(
    cluster: Cluster, rig: Rig, db: psycopg2.extensions.connection
) -> None:
    """Nobody confirms the pod's deletion (its node's kubelet is gone): the GPUs stay
    claimed, the row stays terminating; once the pod is gone, reconcile releases them."""
    uid = cluster.add_node("chute-node-b", gpus=1)
    add_server(db, uid, name="chute-node-b", gpus=1, validator=rig.validator_hotkey)
    rig.settings = rig.scheduler.settings = rig.settings.model_copy(update={"undeploy_wait_s": 1.0})
    rig.validator.add(remote_chute("c-stuck"))
    rig.handle("chute_created", chute_id="c-stuck", version="1")
    [(dep,)] = rows(db, "SELECT deployment_id FROM deployments")
    wait_for("the chute pod", lambda: pods_of(cluster, dep))
    assert rig.scheduler.undeploy(dep) is False
    assert rows(db, "SELECT terminating_at IS NOT NULL FROM deployments") == [(True,)]
    assert rows(db, "SELECT count(*) FROM gpus WHERE deployment_id IS NOT NULL") == [(1,)]
    with PodReaper(cluster.cp):
        wait_for("the pod to go", lambda: not pods_of(cluster, dep))
    assert dep in rig.reconciler.run().released
    assert rows(db, "SELECT count(*) FROM gpus WHERE deployment_id IS NOT NULL") == [(0,)]


def test_reconcile_on_real_nodes_and_objects(
    cluster: Cluster, rig: Rig, db: psycopg2.extensions.connection
) -> None:
    uid = cluster.add_node("chute-node-c", gpus=2)
    add_server(db, uid, name="chute-node-c", gpus=2, validator=rig.validator_hotkey)
    orphan = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "chute-service-orphan",
            "namespace": NAMESPACE,
            "labels": {"chutes/chute": "true", "chutes/deployment-id": "orphan"},
        },
        "spec": {"type": "NodePort", "ports": [{"port": 8000}], "selector": {"x": "y"}},
    }
    cluster.cp.apply(json.dumps(orphan))
    # the GPU device plugin blinks: capacity 0 on a node that is otherwise fine
    blink = {"status": {"capacity": {"nvidia.com/gpu": "0"}}}
    cluster.cp.kubectl(
        "patch", "node", "chute-node-c", "--subresource=status", "--type=merge",
        "-p", json.dumps(blink),
    )  # fmt: skip
    report = rig.reconciler.run()
    assert report.errors == []
    assert "deployment orphan" in report.orphans_deleted
    assert cluster.get("service", "chute-service-orphan") is None
    assert report.statuses.get("chute-node-c") == "NoGpuCapacity"
    assert rows(db, "SELECT status FROM servers WHERE server_id = %s", uid) == [("NoGpuCapacity",)]
    assert not report.servers_deleted


def test_leftover_graval_job_is_deleted_as_the_scheduler(
    cluster: Cluster, rig: Rig, db: psycopg2.extensions.connection
) -> None:
    """A GraVal Job and Service of an add-node that stopped (no server row is Bootstrapping
    for its node) are listed and deleted with the scheduler's own ServiceAccount."""
    labels = {"app": "graval", "graval-node": "chute-node-g"}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "graval-chute-node-g", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "suspend": True,  # no pod: nothing for a kubelet to confirm
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "graval", "image": "graval:lab"}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "graval-service-chute-node-g", "namespace": NAMESPACE},
        "spec": {"type": "NodePort", "ports": [{"port": 8000}], "selector": labels},
    }
    cluster.cp.apply(json.dumps(job))
    cluster.cp.apply(json.dumps(service))
    [found] = [j for j in rig.kube.graval_jobs() if j.name == "graval-chute-node-g"]
    assert found.node == "chute-node-g" and 0 <= found.age_s < 120
    report = rig.reconciler.run()
    assert "graval graval-chute-node-g" not in report.orphans_deleted  # too young to judge
    rig.reconciler.graval_min_age_s = 0.0
    report = rig.reconciler.run()
    assert "graval graval-chute-node-g" in report.orphans_deleted, report
    assert cluster.get("service", "graval-service-chute-node-g") is None
    wait_for("the Job to be gone", lambda: cluster.get("job", "graval-chute-node-g") is None)


def test_scheduler_rbac_is_least_privilege(cluster: Cluster, scheduler_kubeconfig: Path) -> None:
    allowed = [
        ("list", "nodes", ""),
        ("create", "jobs.batch", NAMESPACE),
        ("delete", "services", NAMESPACE),
        ("create", "configmaps", NAMESPACE),
        ("list", "pods", NAMESPACE),
    ]
    denied = [
        ("create", "pods", NAMESPACE),
        ("patch", "nodes", ""),
        ("delete", "nodes", ""),
        ("get", "secrets", NAMESPACE),
        ("create", "jobs.batch", "default"),
        ("delete", "configmaps", "kube-system"),
        ("create", "serviceaccounts/token", NAMESPACE),
        ("update", "jobs.batch", NAMESPACE),
    ]
    for verb, resource, ns in allowed:
        assert cluster.cp.can_i(verb, resource, as_user=SA_USER, namespace=ns), (verb, resource)
    for verb, resource, ns in denied:
        assert not cluster.cp.can_i(verb, resource, as_user=SA_USER, namespace=ns), (verb, resource)


def test_scheduler_process_end_to_end(
    cluster: Cluster,
    scheduler_kubeconfig: Path,
    service_env: ServiceEnv,
    database_dsn: str,
    db: psycopg2.extensions.connection,
    miner_key: Keypair,
    validator_key: Keypair,
) -> None:
    """`python -m control_api scheduler` as a process: an event published while it was not
    running is handled after it starts (objects appear in the API server), SIGTERM stops it
    cleanly and releases its lease."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    redis_db = 13 + (int(worker[2:]) if worker[2:].isdigit() else 0) % 3  # 13..15: private
    redis_url = REDIS_URL.rsplit("/", 1)[0] + f"/{redis_db}"
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    standin = MinerApiStandin(miner_key.ss58_address).start()
    uid = cluster.add_node("chute-node-e2e", gpus=1)
    add_server(db, uid, name="chute-node-e2e", gpus=1, validator=validator_key.ss58_address)
    standin.add_chute("c-e2e")
    supported = {"hotkey": validator_key.ss58_address, "registry": "r", "api": standin.url}
    env = {
        **os.environ,
        **service_env(
            POSTGRESQL=database_dsn,
            REDIS_URL=redis_url,
            VALIDATORS=json.dumps(
                {
                    "defaultRegistry": "r",
                    "defaultApi": standin.url,
                    "supported": [{**supported, "socket": standin.url}],
                }
            ),
            KUBECONFIG=str(scheduler_kubeconfig),
            CHUTES_NAMESPACE=NAMESPACE,
            AUTOSCALE_INTERVAL_S="3600",
            LOG_LEVEL="INFO",
        ),
    }
    EventPublisher(r).publish(
        "chute_created",
        {"chute_id": "c-e2e", "version": "1", "validator": validator_key.ss58_address},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_api", "scheduler"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        dep = wait_for(
            "the deployment",
            lambda: (
                proc.poll() is None
                and rows(db, "SELECT deployment_id FROM deployments WHERE chute_id = 'c-e2e'")
            ),
            timeout=60,
        )[0][0]
        wait_for("its Job", lambda: cluster.get("job", f"chute-{dep}"))
        assert r.get("lease:gepetto") is not None
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        standin.stop()
    assert proc.returncode == 0, out
    assert r.get("lease:gepetto") is None
    info = r.xpending("miner_events_stream", "gepetto")
    assert info["pending"] == 0
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(line["event"] == "scheduler.deployed" for line in lines)
    assert standin.state.bad_signatures == []
    r.flushdb()
    r.close()
