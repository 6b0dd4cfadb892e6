"""The rendered set against a real API server (tests/k8s/controlplane.py): every object is
accepted by server-side apply, a second apply changes nothing, and each ServiceAccount can do
what its process needs and nothing more (`kubectl auth can-i`, answered by RBAC)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml

from tests.ansible_env import REPO
from tests.components.conftest import Rendered
from tests.k8s.controlplane import ControlPlane

NS = "chutes"


def _versions(cp: ControlPlane, rendered: Rendered) -> dict[str, str]:
    """kind/name -> resourceVersion of every rendered object, read from the cluster."""
    out = {}
    for obj in rendered.objects.values():
        args = ["get", obj["kind"].lower(), obj["metadata"]["name"], "-o", "json"]
        if obj["metadata"].get("namespace"):
            args += ["-n", obj["metadata"]["namespace"]]
        live = json.loads(cp.kubectl(*args).stdout)
        out[f"{obj['kind']}/{obj['metadata']['name']}"] = live["metadata"]["resourceVersion"]
    return out


@pytest.fixture(scope="module")
def applied(control_plane: ControlPlane, rendered: Rendered) -> dict[str, Any]:
    """kubectl apply --server-side -R of the render directory, twice."""
    first = control_plane.kubectl(
        "apply", "--server-side", "--field-manager=chutes-tests", "-R", "-f", str(rendered.root)
    ).stdout
    before = _versions(control_plane, rendered)
    second = control_plane.kubectl(
        "apply", "--server-side", "--field-manager=chutes-tests", "-R", "-f", str(rendered.root)
    ).stdout
    return {"first": first, "second": second, "before": before}


def test_every_object_is_accepted(applied: dict[str, Any], rendered: Rendered) -> None:
    lines = [x for x in applied["first"].splitlines() if x.strip()]
    assert len(lines) == len(rendered.objects)
    assert all(x.endswith(" serverside-applied") for x in lines), applied["first"]


def test_second_apply_changes_nothing(
    applied: dict[str, Any], control_plane: ControlPlane, rendered: Rendered
) -> None:
    assert _versions(control_plane, rendered) == applied["before"]


def test_dry_run_of_a_changed_setting_is_a_change(
    applied: dict[str, Any], control_plane: ControlPlane, rendered: Rendered
) -> None:
    """The unchanged-check above can see a change: a server-side dry run of one edited
    object returns a new generation (nothing is stored)."""
    deployment = dict(rendered.get("Deployment", "relay"))
    deployment["spec"] = {**deployment["spec"], "replicas": 3}
    out = control_plane.kubectl(
        "apply",
        "--server-side",
        "--field-manager=chutes-tests",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(deployment),
    ).stdout
    live = json.loads(out)
    assert live["spec"]["replicas"] == 3 and live["metadata"]["generation"] == 2
    assert _versions(control_plane, rendered) == applied["before"]


def sa(name: str) -> str:
    return f"system:serviceaccount:{NS}:{name}"


# (verb, resource, namespace or "" for cluster scope) the API's account must be allowed.
API_ALLOWED = [
    ("get", "nodes", ""),
    ("patch", "nodes", ""),
    ("get", "runtimeclasses.node.k8s.io", ""),
    ("list", "pods", NS),
    ("create", "services", NS),
    ("delete", "services", NS),
    ("list", "jobs.batch", NS),
    ("create", "jobs.batch", NS),
    ("delete", "jobs.batch", NS),
]
# ... and what it must not do (a wider grant here would be a finding).
API_DENIED = [
    ("list", "nodes", ""),
    ("delete", "nodes", ""),
    ("get", "secrets", NS),
    ("list", "secrets", NS),
    ("create", "pods", NS),
    ("delete", "pods", NS),
    ("get", "services", NS),
    ("update", "services", NS),
    ("patch", "jobs.batch", NS),
    ("create", "deployments.apps", NS),
    ("list", "pods", "default"),
    ("create", "jobs.batch", "default"),
    ("create", "serviceaccounts/token", NS),
    ("create", "rolebindings.rbac.authorization.k8s.io", NS),
    ("escalate", "roles.rbac.authorization.k8s.io", NS),
    ("*", "*", NS),
]
# The other accounts call no Kubernetes API at all.
NO_API = ["registry-auth", "relay", "migrate", "postgres", "redis", "registry-proxy", "default"]
PROBES = [
    ("get", "secrets", NS),
    ("list", "pods", NS),
    ("create", "pods", NS),
    ("get", "configmaps", NS),
    ("get", "leases.coordination.k8s.io", NS),
    ("create", "leases.coordination.k8s.io", NS),
    ("get", "nodes", ""),
    ("list", "services", NS),
    ("create", "jobs.batch", NS),
]


def _answers(
    cp: ControlPlane, account: str, checks: list[tuple[str, str, str]]
) -> dict[tuple[str, str, str], bool]:
    """``kubectl auth can-i`` for each check as ``account``, several at a time."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(
            lambda c: cp.can_i(c[0], c[1], as_user=sa(account), namespace=c[2]), checks
        )
        return dict(zip(checks, answers, strict=True))


def test_api_account_can_do_what_add_node_needs_and_nothing_more(
    applied: dict[str, Any], control_plane: ControlPlane
) -> None:
    answers = _answers(control_plane, "control-api", API_ALLOWED + API_DENIED)
    assert [c for c in API_ALLOWED if not answers[c]] == []
    assert [c for c in API_DENIED if answers[c]] == []


@pytest.mark.parametrize("account", NO_API)
def test_other_accounts_can_do_nothing(
    applied: dict[str, Any], control_plane: ControlPlane, account: str
) -> None:
    answers = _answers(control_plane, account, PROBES)
    assert [c for c, allowed in answers.items() if allowed] == []


def test_api_rules_are_control_apis_own(rendered: Rendered) -> None:
    """The role's RBAC is control_api/k8s/rbac.yaml (whose tests prove it sufficient and
    minimal against the client's real calls), less the kubeconfig route's token rule."""
    source = {
        (d["kind"], d["metadata"]["name"]): d
        for d in yaml.safe_load_all((REPO / "control_api/k8s/rbac.yaml").read_text())
        if d
    }
    cluster_role = source[("ClusterRole", "chutes-control-api")]["rules"]
    role = [
        r
        for r in source[("Role", "control-api")]["rules"]
        if r["resources"] != ["serviceaccounts/token"]
    ]
    assert rendered.get("ClusterRole", "chutes-control-api")["rules"] == cluster_role
    assert rendered.get("Role", "control-api")["rules"] == role
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        name = "chutes-control-api" if kind == "ClusterRoleBinding" else "control-api"
        ours, theirs = rendered.get(kind, name), source[(kind, name)]
        assert ours["roleRef"] == theirs["roleRef"] and ours["subjects"] == theirs["subjects"]


def test_the_render_directory_applies_as_a_whole(rendered: Rendered) -> None:
    """The groups sort in apply order: the Namespace comes first."""
    first = sorted(rendered.root.glob("*/*.yaml"))[0]
    assert first.relative_to(rendered.root).as_posix() == "00-miner_common/namespace.yaml"
