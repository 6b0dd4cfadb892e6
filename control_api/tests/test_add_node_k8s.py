"""POST /servers/ and GET /servers/kubeconfig with the real Kubernetes client, as the
control service's ServiceAccount, against a real API server (tests/kube_real.py says what
is real and what the test writes in a kubelet's place). Kubernetes errors are answered
with their reason and status, and change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg2.extensions
import pytest
import yaml
from bittensor_wallet import Keypair
from control_api.clients.graval import HttpGravalClient
from control_api.clients.k8s import GravalSpec, KubeApiError, KubeClient, RealKubeClient
from control_api.core.signing import body_hash, d1_headers
from control_api.main import create_app
from fastapi import FastAPI

from tests.conftest import Api, LiveServer, SettingsFactory
from tests.kube_real import NAMESPACE, OPERATOR_ACCOUNT, Cluster, FakeKubelet
from tests.standins import StandinValidator
from tests.test_add_node import body, post, servers, settle


class DevicesAt(RealKubeClient):
    """The real client, except that graval's /devices is reached at ``devices_url``: the
    test has no cluster network in which the Service's DNS name would resolve."""

    def __init__(self, devices_url: str, kubeconfig: Path) -> None:
        super().__init__(NAMESPACE, kubeconfig=str(kubeconfig))
        self.devices_url = devices_url

    def graval_url(self, spec: GravalSpec) -> str:
        return self.devices_url


@contextmanager
def serve(
    make_settings: SettingsFactory,
    kube: KubeClient,
    miner_key: Keypair,
    redis_prefix: str,
    **overrides: Any,
) -> Iterator[tuple[str, FastAPI]]:
    app = create_app(
        make_settings(**overrides),
        kube=kube,
        graval=HttpGravalClient(miner_key, tries=2, pause_s=0.05),
        redis_prefix=redis_prefix,
    )
    with LiveServer(app) as live:
        yield live.url, app


def add_node(url: str, key: Keypair, validator: StandinValidator, **fields: Any) -> httpx.Response:
    data = {"validator": validator.hotkey, "hourly_cost": 2.5, "gpu_short_ref": "h200", **fields}
    raw = json.dumps(data).encode()
    headers = d1_headers(key, body_hash(raw))
    return httpx.post(url + "/servers/", content=raw, headers=headers, timeout=60)


def node_labels(cluster: Cluster, name: str) -> dict[str, str]:
    node = json.loads(cluster.cp.kubectl("get", "node", name, "-o", "json").stdout)
    return dict(node["metadata"]["labels"])


def test_add_node_through_the_real_api(
    cluster: Cluster,
    make_settings: SettingsFactory,
    validator: StandinValidator,
    miner_key: Keypair,
    redis_prefix: str,
    db: psycopg2.extensions.connection,
) -> None:
    """The whole add-node: the node read and labelled, the graval Service (a real NodePort)
    and Job created, the Job's pod followed to ready, then deleted in the foreground."""
    uid = cluster.add_node("gpu-http")
    kube = DevicesAt(validator.url, cluster.kubeconfig)
    with (
        FakeKubelet(cluster.cp, mode="ready"),
        serve(make_settings, kube, miner_key, redis_prefix) as (url, app),
    ):
        resp = add_node(url, miner_key, validator, name="gpu-http")
        assert resp.status_code == 200, resp.text
        events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.strip()]
        assert events[-1]["message"].startswith("completed server bootstrapping in"), events
        for thread in app.state.res.add_node.threads:
            thread.join(60)
    assert servers(db) == [(uid, "Ready")]
    port = validator.state.registered[0]["nodes"][0]["verification_port"]
    assert 30000 <= port <= 32767
    labels = node_labels(cluster, "gpu-http")
    assert labels["gpu-short-ref"] == "h200" and labels["chutes/worker"] == "true"
    assert labels["chutes/validator"] == validator.hotkey
    assert cluster.get("job", "graval-gpu-http") is None
    assert cluster.get("service", "graval-service-gpu-http") is None
    assert not cluster.get("pods", "-l", "graval-node=gpu-http")["items"]


# case -> (answer status, text in the detail)
ERRORS = {
    "forbidden-node": (502, "Kubernetes refused to get Node err-forbidden-node (403 Forbidden)"),
    "forbidden-pods": (502, 'cannot list resource "pods" in API group "" in the namespace'),
    "missing-node": (404, "Node err-missing-node not found in the cluster"),
    "conflict": (409, 'services "graval-service-err-conflict" already exists'),
    "invalid": (422, 'Invalid value: "h200 sxm"'),
    "no-runtime-class": (400, "RuntimeClass no-such-runtime does not exist in the cluster"),
    "unreachable": (503, "Kubernetes API unreachable (get Node err-unreachable)"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_kubernetes_errors_are_answered(
    case: str,
    cluster: Cluster,
    make_settings: SettingsFactory,
    validator: StandinValidator,
    miner_key: Keypair,
    redis_prefix: str,
    db: psycopg2.extensions.connection,
    tmp_path: Path,
) -> None:
    """403 (no RBAC for the call), 404 (no such node), 409 (a leftover graval Service), 422
    (an invalid label value), a missing RuntimeClass and an unreachable API: each a JSON
    answer with the reason before any streaming, and nothing changed in the cluster or the
    database."""
    name = f"err-{case}"
    if case != "missing-node":
        cluster.add_node(name)
    kube: KubeClient = cluster.client()
    overrides: dict[str, Any] = {}
    short_ref = "h200"
    if case == "forbidden-node":
        kube = cluster.client_as("nobody", tmp_path)
    elif case == "forbidden-pods":  # the ClusterRole without the namespace's Role
        kube = cluster.client_as("nodes-only", tmp_path)
        cluster.cp.kubectl(
            "create",
            "clusterrolebinding",
            "nodes-only",
            "--clusterrole=chutes-control-api",
            f"--serviceaccount={NAMESPACE}:nodes-only",
        )
    elif case == "conflict":  # left over by an attempt whose cleanup failed
        service = f"graval-service-{name}"
        cluster.cp.kubectl(
            "create", "service", "nodeport", service, "--tcp=8000:8000", "-n", NAMESPACE
        )
    elif case == "invalid":
        short_ref = "h200 sxm"
    elif case == "no-runtime-class":
        overrides["graval_runtime_class"] = "no-such-runtime"
    elif case == "unreachable":
        config = json.loads(cluster.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
        closed = tmp_path / "closed.kubeconfig"
        closed.write_text(json.dumps(config))
        kube = RealKubeClient(NAMESPACE, kubeconfig=str(closed))
    labels_before = node_labels(cluster, name) if case != "missing-node" else {}
    with serve(make_settings, kube, miner_key, redis_prefix, **overrides) as (url, _):
        validator.state.supported = {short_ref: {}}
        resp = add_node(url, miner_key, validator, name=name, gpu_short_ref=short_ref)
    status, text = ERRORS[case]
    assert resp.status_code == status, resp.text
    assert text in resp.json()["detail"]
    assert servers(db) == []
    if case != "missing-node":
        assert node_labels(cluster, name) == labels_before
    assert cluster.get("job", f"graval-{name}") is None


def test_kubernetes_error_after_the_stream_started(
    api: Api, db: psycopg2.extensions.connection
) -> None:
    """A Kubernetes refusal during the bootstrap (after the checks passed) ends the stream
    with its reason, not 'internal error', and the attempt is cleaned up."""
    api.kube.add_node("gpu-0", "uid-0")
    message = 'jobs.batch is forbidden: User "system:serviceaccount:chutes:control-api" ...'
    api.kube.create_error = KubeApiError("create Job graval-gpu-0", 403, "Forbidden", message)
    status, events, clean = post(api, body(api))
    assert status == 200 and not clean
    assert events[-1]["message"] == (
        "bootstrap failed: Kubernetes refused to create Job graval-gpu-0 (403 Forbidden): "
        + message
    )
    settle(api)
    assert servers(db) == [] and api.kube.deleted == ["graval-gpu-0"]


def test_kubeconfig_route_with_the_real_api(
    cluster: Cluster,
    make_settings: SettingsFactory,
    miner_key: Keypair,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """GET /servers/kubeconfig issues a working token for the operator's account; for an
    account the control service may not mint tokens for, 502 with Kubernetes' reason."""
    answers = {}
    for account in (OPERATOR_ACCOUNT, "control-api"):
        with serve(
            make_settings,
            cluster.client(),
            miner_key,
            redis_prefix,
            kubeconfig_service_account=account,
            kubeconfig_server=cluster.cp.url,
        ) as (url, _):
            headers = d1_headers(miner_key, "kubeconfig")
            answers[account] = httpx.get(url + "/servers/kubeconfig", headers=headers, timeout=30)
    issued = answers[OPERATOR_ACCOUNT]
    assert issued.status_code == 200, issued.text
    config = tmp_path / "operator.kubeconfig"
    config.write_text(yaml.safe_dump(issued.json()))
    whoami = cluster.cp.kubectl("auth", "whoami", "-o", "json", kubeconfig=config)
    user = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
    assert user == f"system:serviceaccount:{NAMESPACE}:{OPERATOR_ACCOUNT}"
    refused = answers["control-api"]
    assert refused.status_code == 502, refused.text
    assert 'cannot create resource "serviceaccounts/token"' in refused.json()["detail"]
