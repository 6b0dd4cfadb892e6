"""Reconcile's repairs against the real PostgreSQL and the in-memory Kubernetes stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from control_api.clients.k8s_chutes import GravalJob
from control_api.db import claims
from control_api.scheduler import manifests

from tests.conftest import SettingsFactory
from tests.sched_rig import Rig, make_rig, rows
from tests.sched_standins import node, remote_chute
from tests.seed import add_server


@pytest.fixture()
def rig(make_settings: SettingsFactory, db: psycopg2.extensions.connection) -> Iterator[Rig]:
    r = make_rig(make_settings(), node_missing_grace_s=0.0)
    yield r
    r.close()


def deployed(rig: Rig, db: psycopg2.extensions.connection, chute: str = "c1") -> str:
    rig.validator.add(remote_chute(chute))
    rig.handle("chute_created", chute_id=chute, version="1")
    return str(rows(db, "SELECT deployment_id FROM deployments WHERE chute_id = %s", chute)[0][0])


def test_device_plugin_blink_never_deregisters(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    """The node is there but its GPU device plugin reports 0 GPUs for a while: status and an
    alert only, the deployment and the server stay, placement skips the server meanwhile."""
    add_server(db, "uid-1", name="gpu-1", validator=rig.validator_hotkey)
    rig.kube.add_node(node("gpu-1", "uid-1"))
    dep = deployed(rig, db)
    rig.kube.add_node(node("gpu-1", "uid-1", gpu_capacity=0))
    for _ in range(3):
        report = rig.reconciler.run()
        assert not report.servers_deleted and not report.errors
    assert rows(db, "SELECT status FROM servers") == [("NoGpuCapacity",)]
    assert rows(db, "SELECT deployment_id FROM deployments") == [(dep,)]
    assert rig.nodes.deleted == []
    snap = rig.scheduler.snapshot()
    assert snap.servers["uid-1"].ready is False
    rig.validator.add(remote_chute("c2"))
    rig.handle("chute_created", chute_id="c2", version="1")
    assert rows(db, "SELECT count(*) FROM deployments") == [(1,)]  # not placed on it
    rig.kube.add_node(node("gpu-1", "uid-1"))  # the plugin is back
    assert rig.reconciler.run().statuses == {"gpu-1": "Ready"}


@pytest.mark.parametrize(
    ("overrides", "status"),
    [({"ready": False}, "NotReady"), ({"labels": {"chutes/external-ip": ""}}, "LabelsLost")],
)
def test_unhealthy_node_gets_a_status_only(
    rig: Rig, db: psycopg2.extensions.connection, overrides: dict[str, Any], status: str
) -> None:
    add_server(db, "uid-1", name="gpu-1", validator=rig.validator_hotkey)
    rig.kube.add_node(node("gpu-1", "uid-1", **overrides))
    rig.reconciler.run()
    rig.reconciler.run()
    assert rows(db, "SELECT status FROM servers") == [(status,)]


def test_missing_node_is_deleted_after_two_reconciles_and_the_grace(
    make_settings: SettingsFactory, db: psycopg2.extensions.connection
) -> None:
    now = [1000.0]
    r = make_rig(make_settings(), node_missing_grace_s=120.0)
    r.reconciler.clock = lambda: now[0]
    try:
        add_server(db, "uid-1", name="gpu-1", validator=r.validator_hotkey)
        assert not r.reconciler.run().servers_deleted  # 1st cycle missing
        now[0] += 60
        assert not r.reconciler.run().servers_deleted  # 2nd cycle, grace not over
        r.kube.add_node(node("gpu-1", "uid-1"))  # back: the count starts over
        r.reconciler.run()
        r.kube.nodes_by_name.clear()
        now[0] += 500
        assert not r.reconciler.run().servers_deleted
        now[0] += 130
        assert r.reconciler.run().servers_deleted == ["gpu-1"]
        assert rows(db, "SELECT count(*) FROM servers") == [(0,)]
    finally:
        r.close()


def test_replaced_node_with_the_same_name_counts_as_missing(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    add_server(db, "uid-old", name="gpu-1", validator=rig.validator_hotkey)
    rig.kube.add_node(node("gpu-1", "uid-new"))
    rig.reconciler.run()
    assert rig.reconciler.run().servers_deleted == ["gpu-1"]


def test_orphans_and_vanished_jobs(rig: Rig, db: psycopg2.extensions.connection) -> None:
    add_server(db, "uid-1", name="gpu-1", validator=rig.validator_hotkey)
    rig.kube.add_node(node("gpu-1", "uid-1"))
    dep = deployed(rig, db)
    rig.kube.configmaps["chute-code-stale"] = {"metadata": {"name": "chute-code-stale"}}
    rig.kube.job_states["ghost"] = "active"
    report = rig.reconciler.run()
    assert "deployment ghost" in report.orphans_deleted
    assert "configmap chute-code-stale" in report.orphans_deleted
    assert manifests.code_configmap_name("c1", "1") in rig.kube.configmaps  # wanted: kept
    # its Job completes: the deployment is undeployed
    rig.kube.job_states[dep] = "failed"
    assert rig.reconciler.run().undeployed == [dep]
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]


def test_graval_jobs_left_by_a_stopped_add_node(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    """A GraVal Job holds its node's GPUs: one of an add-node still running stays; one whose
    node has no add-node running, or older than an add-node can last, goes with its Service."""
    for name in ("gpu-1", "gpu-2", "gpu-3"):
        add_server(db, f"uid-{name}", name=name, validator=rig.validator_hotkey)
    with db.cursor() as cur:  # gpu-1 and gpu-3 are being added; gpu-2 is Ready
        cur.execute("UPDATE servers SET status = 'Bootstrapping' WHERE name <> 'gpu-2'")
    longest = 2 * rig.settings.graval_bootstrap_timeout + 300
    jobs = [
        GravalJob("graval-gpu-1", "gpu-1", 200.0),  # its add-node is running
        GravalJob("graval-gpu-2", "gpu-2", 200.0),  # none running for gpu-2: left over
        GravalJob("graval-gpu-3", "gpu-3", longest + 1),  # running far too long: left over
        GravalJob("graval-gpu-4", "gpu-4", 30.0),  # too young to judge
    ]
    rig.kube.graval = {j.name: j for j in jobs}
    report = rig.reconciler.run()
    assert sorted(o for o in report.orphans_deleted if o.startswith("graval")) == [
        "graval graval-gpu-2",
        "graval graval-gpu-3",
    ]
    assert sorted(rig.kube.graval) == ["graval-gpu-1", "graval-gpu-4"]
    assert not report.errors


def test_job_vanished_after_grace_and_old_stubs(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    add_server(db, "uid-1", name="gpu-1", validator=rig.validator_hotkey)
    rig.kube.add_node(node("gpu-1", "uid-1"))
    young = deployed(rig, db, "c1")
    old = deployed(rig, db, "c2")
    rig.kube.job_states.pop(young)  # vanished but young: wait for the grace
    with db.cursor() as cur:
        cur.execute(
            "UPDATE deployments SET created_at = now() - interval '2 hours'"
            " WHERE deployment_id = %s",
            (old,),
        )
    report = rig.reconciler.run()
    assert report.undeployed == [old]  # a stub for 2 h
    assert rows(db, "SELECT deployment_id FROM deployments") == [(young,)]


def test_claim_violations_undo_the_newer_deployment(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    add_server(db, "uid-1", name="gpu-1", validator=rig.validator_hotkey)
    rig.kube.add_node(node("gpu-1", "uid-1"))
    first = deployed(rig, db, "c1")
    second = deployed(rig, db, "c2")
    # a pod running on a GPU it does not hold (what upstream's shared GPUs looked like)
    pod = rig.kube.pods[second]
    rig.kube.pods[second] = type(pod)(
        pod.name, pod.deployment_id, pod.phase, pod.node, rig.kube.pods[first].visible_devices
    )
    report = rig.reconciler.run()
    assert report.violations == [second]
    assert rows(db, "SELECT deployment_id FROM deployments") == [(first,)]
    assert claims.violations(db) == []


def test_disk_figures_feed_placement(rig: Rig, db: psycopg2.extensions.connection) -> None:
    add_server(db, "uid-1", name="gpu-1", validator=rig.validator_hotkey)
    rig.kube.add_node(node("gpu-1", "uid-1"))
    with db.cursor() as cur:
        cur.execute("UPDATE servers SET status = 'Ready'")
    rig.kube.disk_gb["gpu-1"] = 5.0  # less than the 10 GB a chute asks for
    rig.reconciler.run()
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1")
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]
