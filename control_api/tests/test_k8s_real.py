"""RealKubeClient against a real API server, as the control service's own ServiceAccount
(control_api/k8s/rbac.yaml): node lookup and quantities, the graval Service and Job, pod
states, foreground deletion, tokens; and the RBAC set is sufficient and minimal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from control_api.clients.k8s import GravalSpec, KubeApiError, KubeUnavailable, RealKubeClient

from tests.kube_real import (
    NAMESPACE,
    OPERATOR_ACCOUNT,
    RBAC_MANIFEST,
    RUNTIME_CLASS,
    SA_USER,
    Cluster,
    FakeKubelet,
)


def spec_for(node: str, gpus: int = 2) -> GravalSpec:
    return GravalSpec(
        node=node,
        nice=node.replace(".", "-"),
        image="example.invalid/graval-bootstrap:0.2.6",
        validator="5" + "V" * 47,
        miner_ss58="5" + "M" * 47,
        gpu_count=gpus,
        cpu=gpus * 4,
        memory_gi=gpus * 100,
        remote_token_hosts="validator.example",
        runtime_class=RUNTIME_CLASS,
    )


@pytest.mark.parametrize(
    ("cpu", "memory", "served", "cpus", "gib"),
    [
        ("32", "263928756Ki", ("32", "263928756Ki"), 32, 263928756 / 2**20),
        ("64", "1e12", ("64", "1e12"), 64, 1e12 / 2**30),
        # the API server rewrites some quantities: the client reads what it serves
        ("2k", "0.5Ti", ("2k", "512Gi"), 2000, 512.0),
        ("0.5", "1.5Gi", ("500m", "1536Mi"), 0, 1.5),
        ("12e-1", "1.5e9", ("1200e-3", "1500e6"), 1, 1.5e9 / 2**30),
    ],
)
def test_node_lookup_and_quantities(
    cluster: Cluster,
    cpu: str,
    memory: str,
    served: tuple[str, str],
    cpus: int,
    gib: float,
) -> None:
    name = f"q-{cpus}-{int(gib)}"
    uid = cluster.add_node(name, gpus=8, cpu=cpu, memory=memory)
    capacity = json.loads(cluster.cp.kubectl("get", "node", name, "-o", "json").stdout)
    assert (capacity["status"]["capacity"]["cpu"], capacity["status"]["capacity"]["memory"]) == (
        served
    )
    node = cluster.client().get_node(name)
    assert node is not None
    assert (node.name, node.uid, node.ready, node.gpu_capacity) == (name, uid, True, 8)
    assert node.cpus == cpus and node.memory_gib == pytest.approx(gib)
    assert node.external_ip == "203.0.113.10" and node.gpu_count_label == 8
    assert node.gpu_memory_mib == 143771


def test_missing_and_not_ready_nodes(cluster: Cluster) -> None:
    client = cluster.client()
    assert client.get_node("no-such-node") is None
    cluster.add_node("not-ready", ready=False)
    node = client.get_node("not-ready")
    assert node is not None and not node.ready


def _audit_lines(cluster: Cluster) -> int:
    return len(cluster.cp.audit_events())


def _used_by_service_account(cluster: Cluster, since: int) -> list[dict[str, Any]]:
    events = cluster.cp.audit_events()[since:]
    return [e for e in events if e["user"]["username"] == SA_USER and "impersonatedUser" not in e]


def _granted() -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of every rule in the manifest."""
    granted = set()
    for doc in yaml.safe_load_all(RBAC_MANIFEST.read_text()):
        for rule in doc.get("rules", []) if doc["kind"] in ("Role", "ClusterRole") else []:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted |= {(group, resource, verb) for verb in rule["verbs"]}
    return granted


def test_client_paths_as_the_service_account(cluster: Cluster, tmp_path: Path) -> None:
    """Every RealKubeClient call of an add-node and of GET /servers/kubeconfig, as the
    control service's ServiceAccount: all allowed, every rule of rbac.yaml used, nothing
    else requested (the apiserver's audit log)."""
    since = _audit_lines(cluster)
    client = cluster.client()
    cluster.add_node("gpu-sa")
    spec = spec_for("gpu-sa")
    labels = {"gpu-short-ref": "h200", "chutes/validator": spec.validator, "chutes/worker": "true"}

    node = client.get_node("gpu-sa")
    assert node is not None and node.ready
    assert client.node_busy("gpu-sa") is None
    assert client.runtime_class_exists(RUNTIME_CLASS)
    assert not client.runtime_class_exists("no-such-runtime")

    client.check_graval(spec, labels)  # dry runs: nothing created, nothing labelled
    assert cluster.get("service", spec.service_name) is None
    assert cluster.get("job", spec.job_name) is None
    labelled = client.get_node("gpu-sa")
    assert labelled is not None and "chutes/worker" not in labelled.labels

    with FakeKubelet(cluster.cp, mode="silent") as kubelet:
        client.label_node("gpu-sa", labels)
        after = client.get_node("gpu-sa")
        assert after is not None and after.labels["gpu-short-ref"] == "h200"
        port = client.create_graval(spec)
        assert 30000 <= port <= 32767
        service = cluster.get("service", spec.service_name)
        assert service["spec"]["ports"][0]["nodePort"] == port
        assert service["spec"]["selector"] == {"app": "graval", "graval-node": "gpu-sa"}
        job = cluster.get("job", spec.job_name)
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"] == {
            "cpu": "8",
            "memory": "200Gi",
            "nvidia.com/gpu": "2",
        }
        assert job["spec"]["template"]["spec"]["nodeName"] == "gpu-sa"
        assert client.node_busy("gpu-sa") == "a graval bootstrap job already exists for this node"
        # the Job controller creates the pod; no kubelet: it stays Pending
        pod = _wait_for_pod(cluster, spec)
        assert pod["status"].get("phase") == "Pending"
        assert client.graval_state(spec) == ("pending", "")
        kubelet.mode = "crash"
        _wait_for(lambda: client.graval_state(spec)[0] != "pending")
        assert client.graval_state(spec) == ("failed", "bootstrap pod CrashLoopBackOff")
        # running but not ready yet (GraVal still starting): still pending
        kubelet.mode = "started"
        _wait_for(
            lambda: (
                "running" in _wait_for_pod(cluster, spec)["status"]["containerStatuses"][0]["state"]
            )
        )
        assert client.graval_state(spec) == ("pending", "")
        kubelet.mode = "ready"
        _wait_for(lambda: client.graval_state(spec)[0] == "ready")
        assert client.graval_url(spec) == f"http://graval-service-gpu-sa.{NAMESPACE}.svc:8000"

        # a second check meets the objects that now exist: 409, as the real create would
        with pytest.raises(KubeApiError) as conflict:
            client.check_graval(spec, labels)
        assert conflict.value.status == 409 and conflict.value.answer_status == 409
        assert f'services "{spec.service_name}" already exists' in str(conflict.value)

        config = client.service_account_kubeconfig(OPERATOR_ACCOUNT, cluster.cp.url, 600)
        assert config is not None

        client.delete_graval(spec, wait_s=60)  # foreground: the pod goes first
    assert cluster.get("job", spec.job_name) is None
    assert cluster.get("service", spec.service_name) is None
    assert not cluster.get("pods", "-l", "graval-node=gpu-sa")["items"]

    # the issued kubeconfig works, for the operator's account and with the cluster's CA
    issued = tmp_path / "operator.kubeconfig"
    issued.write_text(yaml.safe_dump(config))
    whoami = cluster.cp.kubectl("auth", "whoami", "-o", "json", kubeconfig=issued)
    user = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
    assert user == f"system:serviceaccount:{NAMESPACE}:{OPERATOR_ACCOUNT}"

    events = _used_by_service_account(cluster, since)
    refused = [e for e in events if e["responseStatus"]["code"] == 403]
    assert not refused
    used = set()
    for e in events:
        ref: dict[str, str] = e["objectRef"]
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, str(e["verb"])))
    assert used == _granted()


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _wait_for_pod(cluster: Cluster, spec: GravalSpec) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def pod_exists() -> bool:
        found[:] = cluster.get("pods", "-l", f"graval-node={spec.node}")["items"]
        return bool(found)

    _wait_for(pod_exists)
    return found[0]


def test_delete_without_a_kubelet_returns(cluster: Cluster) -> None:
    """A pod bound to a node whose kubelet never answers stays Terminating: delete_graval
    gives up after wait_s instead of hanging, and the Job waits for its pod (foreground)."""
    client = cluster.client()
    cluster.add_node("gpu-gone")
    spec = spec_for("gpu-gone")
    with FakeKubelet(cluster.cp, mode="silent", confirm_deletes=False):
        client.create_graval(spec)
        _wait_for_pod(cluster, spec)
        client.delete_graval(spec, wait_s=2)
        pods = cluster.get("pods", "-l", "graval-node=gpu-gone")["items"]
        assert pods and pods[0]["metadata"].get("deletionTimestamp")
        job = cluster.get("job", spec.job_name)
        assert job is not None and "foregroundDeletion" in job["metadata"]["finalizers"]
    assert cluster.get("service", spec.service_name) is None
    with FakeKubelet(cluster.cp, mode="silent"):  # the kubelet is back: everything goes
        _wait_for(lambda: cluster.get("job", spec.job_name) is None)


def test_crash_loop_past_the_backoff_limit(cluster: Cluster) -> None:
    """restartPolicy OnFailure, backoffLimit 3: after 3 restarts the Job controller fails the
    Job and deletes its pod; graval_state reads the Job then, instead of "pending" (no pod)
    until the bootstrap timeout."""
    client = cluster.client()
    cluster.add_node("gpu-loop")
    spec = spec_for("gpu-loop")
    with FakeKubelet(cluster.cp, mode="crash") as kubelet:
        kubelet.restarts = 3
        client.create_graval(spec)
        _wait_for_pod(cluster, spec)
        _wait_for(lambda: not cluster.get("pods", "-l", "graval-node=gpu-loop")["items"])
        assert client.graval_state(spec) == ("failed", "bootstrap job failed: BackoffLimitExceeded")
        client.delete_graval(spec, wait_s=30)
    assert cluster.get("job", spec.job_name) is None


TOKEN = "--subresource=token"
# (namespace or "" for cluster scope, kubectl auth can-i arguments)
ALLOWED = [
    ("", ("get", "nodes")),
    ("", ("patch", "nodes")),
    ("", ("get", "runtimeclasses.node.k8s.io")),
    (NAMESPACE, ("list", "pods")),
    (NAMESPACE, ("create", "services")),
    (NAMESPACE, ("delete", "services")),
    (NAMESPACE, ("list", "jobs.batch")),
    (NAMESPACE, ("create", "jobs.batch")),
    (NAMESPACE, ("delete", "jobs.batch")),
    (NAMESPACE, ("create", f"serviceaccounts/{OPERATOR_ACCOUNT}", TOKEN)),
]
DENIED = [
    (NAMESPACE, ("get", "secrets")),
    (NAMESPACE, ("list", "secrets")),
    ("kube-system", ("get", "secrets")),
    (NAMESPACE, ("create", "pods")),
    (NAMESPACE, ("delete", "pods")),
    (NAMESPACE, ("get", "pods")),
    (NAMESPACE, ("watch", "pods")),
    ("default", ("list", "pods")),
    ("default", ("create", "jobs.batch")),
    ("default", ("create", "services")),
    (NAMESPACE, ("update", "jobs.batch")),
    (NAMESPACE, ("create", "configmaps")),
    (NAMESPACE, ("create", "serviceaccounts/control-api", TOKEN)),
    (NAMESPACE, ("create", "serviceaccounts/default", TOKEN)),
    (NAMESPACE, ("create", "rolebindings.rbac.authorization.k8s.io")),
    ("", ("list", "nodes")),
    ("", ("delete", "nodes")),
    ("", ("update", "nodes")),
    ("", ("create", "runtimeclasses.node.k8s.io")),
    ("", ("create", "clusterrolebindings.rbac.authorization.k8s.io")),
    ("", ("*", "*")),
]


def test_rbac_matrix(cluster: Cluster) -> None:
    """`kubectl auth can-i --as` the control service: yes for each granted verb, no for the
    rest (secrets, other namespaces, pods it never touches itself, other accounts' tokens,
    cluster-admin verbs)."""
    assert len(ALLOWED) == len(_granted())  # one row per rule and verb of rbac.yaml
    answers = {(ns, args): _can_i(cluster, *args, namespace=ns) for ns, args in ALLOWED + DENIED}
    expected = dict.fromkeys(ALLOWED, True)
    expected |= dict.fromkeys(DENIED, False)
    assert answers == expected


def _can_i(cluster: Cluster, *args: str, namespace: str) -> bool:
    scope = [f"--namespace={namespace}"] if namespace else []
    done = cluster.cp.kubectl("auth", "can-i", *args, f"--as={SA_USER}", *scope, check=False)
    assert done.stdout.strip() in ("yes", "no"), done.stderr
    return done.stdout.strip() == "yes"


def test_api_errors_name_the_call(cluster: Cluster, tmp_path: Path) -> None:
    """403 (an account without the Role), 422 (an invalid label) and an unreachable API
    become KubeApiError / KubeUnavailable naming what was tried."""
    cluster.add_node("gpu-err")
    nobody = cluster.client_as("nobody", tmp_path)
    with pytest.raises(KubeApiError) as forbidden:
        nobody.get_node("gpu-err")
    assert forbidden.value.status == 403 and forbidden.value.answer_status == 502
    assert str(forbidden.value).startswith("Kubernetes refused to get Node gpu-err (403 Forbidden)")
    assert 'cannot get resource "nodes"' in str(forbidden.value)

    with pytest.raises(KubeApiError) as invalid:
        cluster.client().check_graval(spec_for("gpu-err"), {"gpu-short-ref": "h200 sxm"})
    assert invalid.value.status == 422 and invalid.value.reason == "Invalid"
    assert "label Node gpu-err (dry run)" in str(invalid.value)

    config = json.loads(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    closed = tmp_path / "closed.kubeconfig"
    closed.write_text(json.dumps(config))
    with pytest.raises(KubeUnavailable, match=r"Kubernetes API unreachable \(get Node gpu-err\)"):
        RealKubeClient(NAMESPACE, kubeconfig=str(closed), timeout_s=5).get_node("gpu-err")
