"""Every scheduler event handler against the real PostgreSQL, with in-memory Kubernetes and
validator stand-ins: what each writes, creates, deletes and tells the validator, and that a
second delivery of the same event changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import pytest
from control_api.clients.k8s import KubeApiError
from control_api.scheduler import manifests
from control_api.scheduler.stream import Permanent

from tests.conftest import SettingsFactory
from tests.sched_rig import Rig, make_rig, rows
from tests.sched_standins import remote_chute
from tests.seed import add_server


@pytest.fixture()
def rig(make_settings: SettingsFactory, db: psycopg2.extensions.connection) -> Iterator[Rig]:
    r = make_rig(make_settings())
    yield r
    r.close()


def server(
    rig: Rig, db: psycopg2.extensions.connection, sid: str = "s1", **kw: object
) -> list[str]:
    return add_server(db, sid, validator=rig.validator_hotkey, **kw)  # type: ignore[arg-type]


def test_chute_created_stores_deploys_and_is_idempotent(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    gpus = server(rig, db, gpus=4)
    rig.validator.add(remote_chute("c1", gpu_count=2))
    rig.handle("chute_created", chute_id="c1", version="1")
    [(dep, host, port, config_id, stub)] = rows(
        db, "SELECT deployment_id, host, port, config_id, stub FROM deployments"
    )
    assert host == "203.0.113.10" and isinstance(port, int) and config_id and stub is True
    assert manifests.code_configmap_name("c1", "1") in rig.kube.configmaps
    job = rig.kube.jobs[f"chute-{dep}"]
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    held = [
        r[0] for r in rows(db, "SELECT gpu_id FROM gpus WHERE deployment_id = %s ORDER BY 1", dep)
    ]
    assert env["NVIDIA_VISIBLE_DEVICES"] == manifests.visible_devices(tuple(held))
    assert set(held) <= set(gpus) and len(held) == 2
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        f"{rig.validator_hotkey.lower()}.localregistry.chutes.ai:30500/"
    )
    rig.handle("chute_created", chute_id="c1", version="1")  # delivered again
    assert len(rows(db, "SELECT 1 FROM deployments")) == 1
    assert len(rig.validator.launches) == 1


def test_chute_created_job_only_and_unknown(rig: Rig, db: psycopg2.extensions.connection) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("jobchute"))
    rig.handle("chute_created", chute_id="jobchute", version="1", job_only=True)
    rig.handle("chute_created", chute_id="gone", version="1")
    assert rows(db, "SELECT chute_id FROM chutes") == [("jobchute",)]
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]


def test_chute_code_over_the_limit_is_permanent(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    rig.validator.add(remote_chute("huge", code="x" * (manifests.CODE_LIMIT_BYTES + 1)))
    with pytest.raises(Permanent, match="over the ConfigMap limit"):
        rig.handle("chute_created", chute_id="huge", version="1")
    assert not rig.kube.configmaps


def test_unknown_validator_is_permanent(rig: Rig) -> None:
    with pytest.raises(Permanent, match="unknown validator"):
        rig.handle("chute_created", chute_id="c", version="1", validator="5someoneelse")


def test_targeted_event_for_another_miner_is_ignored(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    server(rig, db, verified=False)
    gpu = rows(db, "SELECT gpu_id FROM gpus LIMIT 1")[0][0]
    rig.handle("gpu_verified", gpu_id=gpu, miner_hotkey="5notus")
    assert rows(db, "SELECT verified FROM gpus WHERE gpu_id = %s", gpu) == [(False,)]
    rig.handle("gpu_verified", gpu_id=gpu, miner_hotkey=rig.settings.miner_ss58)
    assert rows(db, "SELECT verified FROM gpus WHERE gpu_id = %s", gpu) == [(True,)]
    others = rows(db, "SELECT count(*) FROM gpus WHERE verified")
    assert others == [(1,)]  # only that GPU (upstream's WHERE server_id = gpu_id was a no-op)


def test_instance_lifecycle_by_config_id(rig: Rig, db: psycopg2.extensions.connection) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1")
    [(dep, config_id)] = rows(db, "SELECT deployment_id, config_id FROM deployments")
    for _ in range(2):
        rig.handle("instance_created", chute_id="c1", instance_id="i1", config_id=config_id)
        rig.handle("instance_verified", instance_id="i1")
        rig.handle("instance_activated", chute_id="c1", instance_id="i1", config_id=config_id)
    [(inst, active, stub, verified, activated)] = rows(
        db,
        "SELECT instance_id, active, stub, verified_at IS NOT NULL, activated_at IS NOT NULL"
        " FROM deployments",
    )
    assert (inst, active, stub, verified, activated) == ("i1", True, False, True, True)
    rig.handle("instance_deleted", chute_id="c1", instance_id="i1", config_id=config_id)
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]
    assert rows(db, "SELECT count(*) FROM gpus WHERE deployment_id IS NOT NULL") == [(0,)]
    assert rig.validator.deleted_instances == []  # the validator dropped it already
    assert f"chute-{dep}" not in rig.kube.jobs


def test_chute_updated_refetches_without_redeploy(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1")
    rig.validator.add(remote_chute("c1", version="2", chutes_version="0.3.9"))
    rig.handle("chute_updated", chute_id="c1", version="2")
    assert rows(db, "SELECT version, chutes_version FROM chutes") == [("2", "0.3.9")]
    assert rows(db, "SELECT version FROM deployments") == [("1",)]
    assert len(rig.validator.launches) == 1


def test_chute_deleted_undeploys_then_deletes(rig: Rig, db: psycopg2.extensions.connection) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1")
    [(dep,)] = rows(db, "SELECT deployment_id FROM deployments")
    with db.cursor() as cur:
        cur.execute("UPDATE deployments SET instance_id = 'i1'")
    rig.handle("chute_deleted", chute_id="c1", version="1")
    assert rows(db, "SELECT count(*) FROM chutes") == [(0,)]
    assert rig.validator.deleted_instances == [("c1", "i1")]
    assert not rig.kube.jobs and not rig.kube.services and not rig.kube.configmaps
    assert rows(
        db, "SELECT deleted_at IS NOT NULL FROM deployment_audit WHERE deployment_id = %s", dep
    ) == [(True,)]


def test_undeploy_waits_for_pods_before_releasing(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1")
    [(dep,)] = rows(db, "SELECT deployment_id FROM deployments")
    rig.kube.stuck = True  # a kubelet that never confirms the pod is gone
    assert rig.scheduler.undeploy(dep) is False
    assert rows(db, "SELECT terminating_at IS NOT NULL FROM deployments") == [(True,)]
    assert rows(db, "SELECT count(*) FROM gpus WHERE deployment_id = %s", dep) == [(1,)]
    rig.kube.stuck = False
    report = rig.reconciler.run()  # finishes the termination once the pod is gone
    assert dep in report.released
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]


def test_bounty_change_only_without_deployments(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1", job_only=True)
    rig.handle("bounty_change", chute_id="c1", bounty=50)
    assert rows(db, "SELECT count(*) FROM deployments") == [(1,)]
    rig.handle("bounty_change", chute_id="c1", bounty=80)  # one exists: nothing more
    assert rows(db, "SELECT count(*) FROM deployments") == [(1,)]


def test_image_updated_sets_image_of_listed_chutes(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    for c in ("a", "b"):
        rig.validator.add(remote_chute(c))
        rig.handle("chute_created", chute_id=c, version="1", job_only=True)
    rig.handle(
        "image_updated", image_id="i", image="user/img:2", chutes_version="0.4.0", chute_ids=["a"]
    )
    assert rows(db, "SELECT chute_id, image, chutes_version FROM chutes ORDER BY 1") == [
        ("a", "user/img:2", "0.4.0"),
        ("b", "user/img:1", "0.3.5"),
    ]


@pytest.mark.parametrize("field", ["exclude", "excluded"])
def test_job_exclusion_both_spellings(
    rig: Rig, db: psycopg2.extensions.connection, field: str
) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1", job_only=True)
    rig.handle("job_created", job_id="j1", chute_id="c1", **{field: [rig.settings.miner_ss58]})
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]


def test_rebroadcast_job_without_disk_gb(rig: Rig, db: psycopg2.extensions.connection) -> None:
    server(rig, db)
    ports = [{"ports": [{"port": 9000, "proto": "udp"}]}, {"ports": [{"port": 7000}]}]
    rig.validator.add(remote_chute("c1", jobs=ports))
    rig.handle("chute_created", chute_id="c1", version="1", job_only=True)
    for _ in range(2):  # the second delivery finds the job's deployment and stops
        rig.handle("job_created", job_id="j1", chute_id="c1", gpu_count=1, exclude=["5other"])
    [(dep, job_id)] = rows(db, "SELECT deployment_id, job_id FROM deployments")
    job = rig.kube.jobs[f"chute-{dep}"]
    assert job_id == "j1" and job["metadata"]["labels"]["chutes/job-id"] == "j1"
    res = job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert res["ephemeral-storage"] == "10Gi"  # the default when disk_gb is absent
    svc = rig.kube.services[f"chute-service-{dep}"]  # the chute's job ports, from the validator
    assert [p["port"] for p in svc["spec"]["ports"]] == [8000, 8001, 7000, 9000]
    assert rig.validator.launches == [("c1", "j1")]
    rig.handle("job_deleted", job_id="j1", instance_id="i9")
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]


def test_job_that_cannot_launch_is_given_back(rig: Rig, db: psycopg2.extensions.connection) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1", job_only=True)
    rig.validator.launch_refusals["c1"] = 423
    rig.handle("job_created", job_id="j1", chute_id="c1", disk_gb=20)
    assert rig.validator.released_jobs == ["j1"]
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]
    assert rows(db, "SELECT count(*) FROM gpus WHERE deployment_id IS NOT NULL") == [(0,)]


def test_kubernetes_refusal_undoes_the_claim(rig: Rig, db: psycopg2.extensions.connection) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("c1"))
    rig.kube.fail_create_job = KubeApiError("create Job", 403, "Forbidden", "no")
    rig.handle("chute_created", chute_id="c1", version="1")
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]
    assert rows(db, "SELECT count(*) FROM gpus WHERE deployment_id IS NOT NULL") == [(0,)]
    assert not rig.kube.services


def test_server_deleted_undeploys_everything_then_deregisters(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    gpus = server(rig, db, gpus=2)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1")
    rig.handle("server_deleted", server_id="s1")
    assert rows(db, "SELECT count(*) FROM servers") == [(0,)]
    assert sorted(rig.nodes.deleted) == sorted(gpus)
    assert not rig.kube.jobs
    rig.handle("server_deleted", server_id="s1")  # again: nothing left to do


def test_undeploy_requested(rig: Rig, db: psycopg2.extensions.connection) -> None:
    server(rig, db)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1")
    [(dep,)] = rows(db, "SELECT deployment_id FROM deployments")
    rig.handle("undeploy_requested", deployment_ids=[dep, "not-there"], reason="purge")
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]


def test_rolling_update_redeploys_on_the_same_server(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    server(rig, db, "s1", hourly_cost=5.0)
    server(rig, db, "s2", hourly_cost=1.0)
    rig.validator.add(remote_chute("c1"))
    rig.handle("chute_created", chute_id="c1", version="1")
    [(dep, first)] = rows(db, "SELECT deployment_id, server_id FROM deployments")
    assert first == "s2"
    with db.cursor() as cur:  # s1 is now the cheaper one: a fresh placement would go there
        cur.execute("UPDATE servers SET hourly_cost = 0.5 WHERE server_id = 's1'")
        cur.execute("UPDATE deployments SET instance_id = 'i1'")
    rig.validator.add(remote_chute("c1", version="2"))
    rig.handle("rolling_update", chute_id="c1", instance_id="i1", old_version="1", new_version="2")
    [(new, server_id, version)] = rows(
        db, "SELECT deployment_id, server_id, version FROM deployments"
    )
    assert new != dep and server_id == "s2" and version == "2"
    assert rig.validator.deleted_instances == [("c1", "i1")]


def test_socket_reconnected_reconciles(rig: Rig, db: psycopg2.extensions.connection) -> None:
    rig.kube.services["chute-service-orphan"] = {
        "metadata": {"labels": {"chutes/deployment-id": "orphan"}},
        "spec": {"ports": []},
    }
    rig.handle("socket_reconnected")
    assert "chute-service-orphan" not in rig.kube.services
