"""The real apply path: playbooks/deploy.yml with kubernetes.core against an API server
(tests/k8s/controlplane.py, no kubelets, so miner_wait is false except where the wait's
failure is the subject). A dry run (--check) after the deploy reports changed=0 and changes
nothing; a wait that times out names the object and what its pods show. A real rerun, with
pods that run: test_rollout.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.components.conftest import Deploy, cluster_vars, read_secrets, recap
from tests.k8s.controlplane import ControlPlane


def _versions(cp: ControlPlane) -> dict[str, str]:
    kinds = "deploy,daemonset,job,svc,cm,secret,sa,netpol,role,rolebinding"
    items = json.loads(cp.kubectl("get", kinds, "-n", "chutes", "-o", "json").stdout)["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PostgreSQL's data directory on the "control node" (this machine, a local connection)."""
    return tmp_path_factory.mktemp("node") / "postgres-data"


@pytest.fixture(scope="module")
def runs(deploy: Deploy, fresh_control_plane: ControlPlane, data_dir: Path) -> dict[str, Any]:
    cp = fresh_control_plane
    rc, first = deploy.run(extra_vars=cluster_vars(cp, data_dir))
    assert rc == 0, first[-4000:]
    secrets, versions = read_secrets(cp), _versions(cp)
    rc, check = deploy.run("--check", extra_vars=cluster_vars(cp, data_dir))
    assert rc == 0, check[-4000:]
    return {"first": first, "check": check, "secrets": secrets, "versions": versions}


def test_first_run_creates_every_object(runs: dict[str, Any], rendered_names: set[str]) -> None:
    assert recap(runs["first"])["changed"] > 0
    assert set(runs["versions"]) >= rendered_names


@pytest.fixture
def rendered_names(rendered: Any) -> set[str]:
    return {
        f"{o['kind']}/{o['metadata']['name']}"
        for o in rendered.objects.values()
        if o.get("metadata", {}).get("namespace") == "chutes"
    }


def test_data_directory_belongs_to_postgres(runs: dict[str, Any], data_dir: Path) -> None:
    info = data_dir.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (999, 999, 0o700)


def test_rerun_changes_nothing(runs: dict[str, Any], fresh_control_plane: ControlPlane) -> None:
    # a dry run (--check) after the deploy; a real rerun: test_rollout.py
    counts = recap(runs["check"])
    assert counts["changed"] == 0 and counts["failed"] == 0, runs["check"][-4000:]
    assert _versions(fresh_control_plane) == runs["versions"]


def test_generated_secrets_are_kept(
    runs: dict[str, Any], fresh_control_plane: ControlPlane
) -> None:
    assert read_secrets(fresh_control_plane) == runs["secrets"]
    for value in (
        runs["secrets"]["postgres-secret"]["postgres-password"],
        runs["secrets"]["miner-credentials"]["seed"],
    ):
        assert value not in runs["first"] + runs["check"]


def test_objects_are_owned_by_the_collections_field_manager(
    runs: dict[str, Any], fresh_control_plane: ControlPlane
) -> None:
    live = json.loads(
        fresh_control_plane.kubectl(
            "get", "deploy", "api", "-n", "chutes", "-o", "json", "--show-managed-fields"
        ).stdout
    )
    managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
    assert ("chutes.miner", "Apply") in managers, managers


def test_a_wait_that_times_out_says_which_object_and_why(
    runs: dict[str, Any], deploy: Deploy, fresh_control_plane: ControlPlane, data_dir: Path
) -> None:
    rc, out = deploy.run(
        "--tags",
        "miner_postgres",
        extra_vars=cluster_vars(
            fresh_control_plane, data_dir, miner_wait=True, miner_wait_timeout=5
        ),
    )
    assert rc != 0
    assert "Not ready after 5 s" in out and "秒后仍未就绪" in out
    assert "Deployment/postgres: 0 updated, 0 available of 1 replicas" in out
    assert "no pods" in out
