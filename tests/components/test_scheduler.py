"""chutes.miner.miner_scheduler: the scheduler (gepetto) next to the miner API.

Rendered (the default set): the API's image and the scheduler's command, probes on the port
the scheduler serves, non-root, the RBAC of control_api/k8s/scheduler-rbac.yaml, no strategy
ConfigMap. Against a real API server (tests/k8s/controlplane.py, no kubelets, so miner_wait is
false): playbooks/deploy.yml with a strategy file, a rerun that changes nothing, a new file
content that changes only ConfigMap gepetto-strategy (the scheduler hot-reloads it: the pod
template stays, nothing restarts), with hot reload off a new content that does roll the pod,
switching the file off, and what the scheduler's ServiceAccount may and may not do
(``kubectl auth can-i``, answered by RBAC)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible_env import REPO
from tests.components.conftest import Deploy, Rendered, cluster_vars, recap
from tests.k8s.controlplane import ControlPlane

NS = "chutes"
ACCOUNT = f"system:serviceaccount:{NS}:gepetto"
STRATEGY_V1 = '''"""An operator's strategy (test): the baseline's answers."""

from control_api.scheduler.strategies.baseline import create_strategy  # noqa: F401

STRATEGY_API_VERSION = 1
'''
CLEANER = (
    "collections/ansible_collections/chutes/miner/roles/miner_scheduler/files/cache_cleaner.py"  # noqa: E501
)
STRATEGY_V2 = STRATEGY_V1.replace("(test)", "(test, second version)")


def _deployment(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("Deployment", "gepetto")


def test_scheduler_runs_the_api_image_as_the_scheduler(rendered: Rendered) -> None:
    pod = _deployment(rendered)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    api_pod = rendered.get("Deployment", "api")["spec"]["template"]["spec"]
    api = api_pod["containers"][0]
    assert container["image"] == api["image"]
    assert container["command"] == ["python", "-m", "control_api"]
    assert container["args"] == ["scheduler"]
    assert _deployment(rendered)["spec"]["replicas"] == 1
    assert pod["serviceAccountName"] == "gepetto"
    assert pod["nodeSelector"] == api_pod["nodeSelector"]
    # the probes hit the Prometheus port the scheduler serves (METRICS_PORT)
    config = rendered.get("ConfigMap", "gepetto-config")["data"]
    assert container["ports"] == [
        {"name": "metrics", "containerPort": int(config["METRICS_PORT"]), "protocol": "TCP"}
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [
        "miner-api-config",
        "gepetto-config",
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["capabilities"]["drop"] == ["ALL"]


def test_builtin_strategy_by_default(rendered: Rendered) -> None:
    config = rendered.get("ConfigMap", "gepetto-config")["data"]
    assert config["GEPETTO_STRATEGY"] == "" and config["GEPETTO_STRATEGY_CONFIG"] == "{}"
    assert not [
        o for o in rendered.of_kind("ConfigMap") if o["metadata"]["name"] == "gepetto-strategy"
    ]
    pod = _deployment(rendered)["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]


def test_cache_cleaner_configmap_and_image(rendered: Rendered) -> None:
    """Every chute Job's cache-init step mounts ConfigMap chutes-cache-cleaner and runs its
    script with CACHE_CLEANER_IMAGE: by default the scheduler's own, pinned image."""
    script = REPO / CLEANER
    data = rendered.get("ConfigMap", "chutes-cache-cleaner")["data"]
    assert data == {"cache_cleaner.py": script.read_text()}
    config = rendered.get("ConfigMap", "gepetto-config")["data"]
    (container,) = _deployment(rendered)["spec"]["template"]["spec"]["containers"]
    assert config["CACHE_CLEANER_IMAGE"] == container["image"]


def test_scheduler_rules_are_control_apis_own(rendered: Rendered) -> None:
    """The role's RBAC is control_api/k8s/scheduler-rbac.yaml, whose tests run the scheduler's
    Kubernetes client under it against a real API server."""
    source = {
        (d["kind"], d["metadata"]["name"]): d
        for d in yaml.safe_load_all((REPO / "control_api/k8s/scheduler-rbac.yaml").read_text())
        if d
    }
    for kind, name in (("ClusterRole", "chutes-gepetto"), ("Role", "gepetto")):
        assert rendered.get(kind, name)["rules"] == source[(kind, name)]["rules"], kind
    for kind, name in (("ClusterRoleBinding", "chutes-gepetto"), ("RoleBinding", "gepetto")):
        ours, theirs = rendered.get(kind, name), source[(kind, name)]
        assert ours["roleRef"] == theirs["roleRef"] and ours["subjects"] == theirs["subjects"]


def test_network_policy_opens_only_what_the_scheduler_reaches(rendered: Rendered) -> None:
    spec = rendered.get("NetworkPolicy", "gepetto-network-policy")["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "gepetto"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9090}]}]
    dns, postgres, redis, apiserver, validators = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53} and "to" not in dns
    for rule, name, port in ((postgres, "chutes-postgres", 5432), (redis, "chutes-redis", 6379)):
        assert rule["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        labels = rendered.get("Deployment", name.removeprefix("chutes-"))["spec"]["template"]
        assert labels["metadata"]["labels"]["app.kubernetes.io/name"] == name
    assert [p["port"] for p in apiserver["ports"]] == [6443, 16443]
    # both test validators' APIs are https URLs without a port
    assert validators["ports"] == [{"protocol": "TCP", "port": 443}]


def _refused(deploy: Deploy, tmp_path: Path, **bad: Any) -> str:
    out_dir = tmp_path / "out"
    rc, out = deploy.run(
        "--tags",
        "miner_scheduler",
        extra_vars={"miner_render_only": True, "miner_render_dir": str(out_dir), **bad},
    )
    assert rc != 0
    assert not out_dir.exists()  # nothing written
    return out


def test_bad_strategy_settings_are_refused(deploy: Deploy, tmp_path: Path) -> None:
    strategy = tmp_path / "strategy.py"
    strategy.write_text(STRATEGY_V1)
    both = {
        "miner_scheduler_strategy_file": str(strategy),
        "miner_scheduler_strategy_module": "control_api.scheduler.strategies.fill",
    }
    for bad in (both, {"miner_scheduler_strategy_file": str(tmp_path / "missing.py")}):
        out = _refused(deploy, tmp_path, **bad)
        assert "at most one of the two" in out and "两者最多设置一个" in out, out[-3000:]


# --- against a real API server ------------------------------------------------------------


def _live(cp: ControlPlane, kind: str, name: str) -> dict[str, Any] | None:
    done = cp.kubectl("get", kind, name, "-n", NS, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _versions(cp: ControlPlane) -> dict[str, str]:
    kinds = "deploy,cm,sa,netpol,role,rolebinding"
    items = json.loads(
        cp.kubectl(
            "get", kinds, "-n", NS, "-l", "app.kubernetes.io/name=gepetto", "-o", "json"
        ).stdout
    )["items"]
    out = {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}
    for kind, name in (("clusterrole", "chutes-gepetto"), ("clusterrolebinding", "chutes-gepetto")):
        live = json.loads(cp.kubectl("get", kind, name, "-o", "json").stdout)
        out[f"{kind}/{name}"] = live["metadata"]["resourceVersion"]
    return out


@pytest.fixture(scope="module")
def runs(
    deploy: Deploy, fresh_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The whole deploy with strategy v1, then (the scheduler's role only) an unchanged rerun,
    v2, hot reload off, v1 again with hot reload off, and no file; what the cluster held after
    each."""
    cp = fresh_control_plane
    base = tmp_path_factory.mktemp("scheduler")
    strategy = base / "my_strategy.py"
    data_dir = base / "postgres-data"
    with_file = cluster_vars(cp, data_dir, miner_scheduler_strategy_file=str(strategy))
    out: dict[str, Any] = {}

    def step(name: str, content: str, extra_vars: dict[str, Any], *args: str) -> None:
        """Run with ``content`` in the strategy file; record the run and the cluster."""
        strategy.write_text(content)
        rc, log = deploy.run(*args, extra_vars=extra_vars)
        assert rc == 0, log[-4000:]
        out[name] = {
            "log": log,
            "versions": _versions(cp),
            "deployment": _live(cp, "deploy", "gepetto"),
            "strategy": _live(cp, "cm", "gepetto-strategy"),
        }

    only = ("--tags", "miner_scheduler")
    step("first", STRATEGY_V1, with_file)
    step("rerun", STRATEGY_V1, with_file, *only)
    step("v2", STRATEGY_V2, with_file, *only)
    # hot reload off: the pod carries the file's checksum, so a new content rolls it
    frozen = {**with_file, "miner_scheduler_strategy_reload_interval": 0}
    step("frozen", STRATEGY_V2, frozen, *only)
    step("frozen-v1", STRATEGY_V1, frozen, *only)
    step("off", STRATEGY_V1, cluster_vars(cp, data_dir), *only)
    return out


def test_first_run_mounts_the_strategy_file(runs: dict[str, Any]) -> None:
    first = runs["first"]
    assert first["strategy"]["data"] == {"strategy.py": STRATEGY_V1}  # byte for byte
    pod = first["deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["strategy"]["mountPath"] == "/etc/gepetto" and "subPath" not in mounts["strategy"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["strategy"]["configMap"]["name"] == "gepetto-strategy"
    assert "Deployment/gepetto" in first["versions"]


def test_unchanged_rerun_changes_and_restarts_nothing(runs: dict[str, Any]) -> None:
    counts = recap(runs["rerun"]["log"])
    assert counts["changed"] == 0 and counts["failed"] == 0, runs["rerun"]["log"][-4000:]
    assert runs["rerun"]["versions"] == runs["first"]["versions"]


def test_new_strategy_content_changes_only_its_configmap(runs: dict[str, Any]) -> None:
    """The scheduler hot-reloads the mounted file: the pod template (and so the pod) stays."""
    before, after = runs["rerun"], runs["v2"]
    assert after["strategy"]["data"] == {"strategy.py": STRATEGY_V2}
    changed = sorted(k for k, v in after["versions"].items() if before["versions"].get(k) != v)
    assert changed == ["ConfigMap/gepetto-strategy"]
    assert (
        after["deployment"]["metadata"]["generation"]
        == before["deployment"]["metadata"]["generation"]
    )
    assert "changed: ConfigMap/gepetto-strategy" in after["log"]
    assert recap(after["log"])["changed"] == 1


def _annotations(step: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = step["deployment"]["spec"]["template"]["metadata"]["annotations"]
    return annotations


def test_without_hot_reload_a_new_content_rolls_the_pod(runs: dict[str, Any]) -> None:
    hot, frozen, changed = runs["v2"], runs["frozen"], runs["frozen-v1"]
    assert "checksum/strategy" not in _annotations(hot)
    assert (
        frozen["deployment"]["metadata"]["generation"] > hot["deployment"]["metadata"]["generation"]
    )
    assert changed["strategy"]["data"] == {"strategy.py": STRATEGY_V1}
    assert (
        changed["deployment"]["metadata"]["generation"]
        > frozen["deployment"]["metadata"]["generation"]
    )
    before, after = _annotations(frozen), _annotations(changed)
    assert before["checksum/strategy"] != after["checksum/strategy"]
    assert {k: v for k, v in before.items() if k != "checksum/strategy"} == {
        k: v for k, v in after.items() if k != "checksum/strategy"
    }


def test_switching_the_file_off_removes_the_configmap_and_the_mount(runs: dict[str, Any]) -> None:
    off = runs["off"]
    assert off["strategy"] is None
    pod = off["deployment"]["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    # GEPETTO_STRATEGY changed: this one rolls the pod
    assert _annotations(off)["checksum/config"] != _annotations(runs["v2"])["checksum/config"]


# (verb, resource, namespace or "" for all namespaces / cluster scope)
ALLOWED = [
    ("get", "nodes", ""),
    ("list", "nodes", ""),
    ("list", "pods", NS),
    ("get", "services", NS),
    ("list", "services", NS),
    ("create", "services", NS),
    ("delete", "services", NS),
    ("list", "configmaps", NS),
    ("create", "configmaps", NS),
    ("delete", "configmaps", NS),
    ("list", "jobs.batch", NS),
    ("create", "jobs.batch", NS),
    ("delete", "jobs.batch", NS),
]
DENIED = [
    ("watch", "nodes", ""),
    ("patch", "nodes", ""),
    ("delete", "nodes", ""),
    ("get", "secrets", NS),
    ("list", "secrets", NS),
    ("list", "secrets", ""),
    ("get", "pods", NS),
    ("create", "pods", NS),
    ("delete", "pods", NS),
    ("create", "pods/exec", NS),
    ("update", "services", NS),
    ("patch", "services", NS),
    ("get", "configmaps", NS),
    ("update", "configmaps", NS),
    ("patch", "configmaps", NS),
    ("get", "jobs.batch", NS),
    ("patch", "jobs.batch", NS),
    ("create", "deployments.apps", NS),
    ("list", "pods", ""),
    ("list", "pods", "default"),
    ("create", "jobs.batch", "default"),
    ("create", "services", "kube-system"),
    ("create", "configmaps", "default"),
    ("get", "runtimeclasses.node.k8s.io", ""),
    ("create", "serviceaccounts/token", NS),
    ("create", "rolebindings.rbac.authorization.k8s.io", NS),
    ("escalate", "roles.rbac.authorization.k8s.io", NS),
    ("*", "*", NS),
]


def test_scheduler_account_can_do_what_it_calls_and_nothing_more(
    runs: dict[str, Any], fresh_control_plane: ControlPlane
) -> None:
    cp = fresh_control_plane
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(
            zip(
                ALLOWED + DENIED,
                pool.map(
                    lambda c: cp.can_i(c[0], c[1], as_user=ACCOUNT, namespace=c[2]),
                    ALLOWED + DENIED,
                ),
                strict=True,
            )
        )
    assert [c for c in ALLOWED if not answers[c]] == []
    assert [c for c in DENIED if answers[c]] == []
    account = _live(cp, "sa", "gepetto")
    assert account is not None and account.get("automountServiceAccountToken", True) is True
