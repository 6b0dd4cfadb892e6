"""Reconcile against the validator (runtime contract §9.3), on the real PostgreSQL with the
in-memory Kubernetes and validator stand-ins: chutes follow the validator's list, deployments
follow its instances, remote orphans are deleted, and nothing destructive happens for a
validator whose lists were not read whole."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from bittensor_wallet import Keypair
from control_api.clients.miner_validator import HttpMinerValidator
from control_api.scheduler import manifests
from control_api.scheduler.reconcile import ReconcileReport
from prometheus_client import REGISTRY

from tests.conftest import SettingsFactory
from tests.sched_rig import Rig, make_rig, rows
from tests.sched_standins import MemoryMinerValidator, node, remote_chute
from tests.sched_validator import MinerApiStandin
from tests.seed import add_server

STATE_SQL = (
    "SELECT deployment_id, chute_id, instance_id, active, stub, verified_at IS NOT NULL,"
    " activated_at IS NOT NULL FROM deployments ORDER BY deployment_id"
)


@pytest.fixture()
def rig(make_settings: SettingsFactory, db: psycopg2.extensions.connection) -> Iterator[Rig]:
    r = make_rig(make_settings(), node_missing_grace_s=0.0)
    add_server(db, "uid-1", name="gpu-1", validator=r.validator_hotkey)
    r.kube.add_node(node("gpu-1", "uid-1"))
    yield r
    r.close()


def deploy(rig: Rig, db: psycopg2.extensions.connection, chute: str) -> tuple[str, str]:
    """A chute published and deployed once: (deployment_id, config_id)."""
    rig.validator.add(remote_chute(chute))
    rig.handle("chute_created", chute_id=chute, version="1")
    [(dep, config)] = rows(
        db, "SELECT deployment_id, config_id FROM deployments WHERE chute_id = %s", chute
    )
    return str(dep), str(config)


def age(db: psycopg2.extensions.connection, dep: str, seconds: int) -> None:
    with db.cursor() as cur:
        cur.execute(
            "UPDATE deployments SET created_at = now() - make_interval(secs => %s)"
            " WHERE deployment_id = %s",
            (seconds, dep),
        )


def stale(rig: Rig) -> float | None:
    return REGISTRY.get_sample_value(
        "gepetto_validator_view_stale", {"validator": rig.validator_hotkey}
    )


def quiet(report: ReconcileReport) -> bool:
    return report.remote.changes() == 0 and not report.errors and not report.undeployed


def believed_empty(rig: Rig, db: psycopg2.extensions.connection) -> ReconcileReport:
    """The validator now lists nothing of what is here: the first empty_list_rounds - 1 reconciles
    remove and undeploy nothing (and name it distrusted); the next one acts."""
    kept = (
        rows(db, "SELECT deployment_id FROM deployments ORDER BY 1"),
        rows(db, "SELECT chute_id FROM chutes ORDER BY 1"),
    )
    for _ in range(rig.settings.empty_list_rounds - 1):
        report = rig.reconciler.run()
        assert report.remote.empty_lists_distrusted == [rig.validator_hotkey], report
        assert not report.remote.chutes_removed and not report.remote.instances_vanished
        assert (
            rows(db, "SELECT deployment_id FROM deployments ORDER BY 1"),
            rows(db, "SELECT chute_id FROM chutes ORDER BY 1"),
        ) == kept
    report = rig.reconciler.run()
    assert report.remote.empty_lists_distrusted == []
    return report


def test_chutes_follow_the_validator(rig: Rig, db: psycopg2.extensions.connection) -> None:
    # a chute published while the scheduler was away: added (and deployed by the strategy)
    rig.validator.add(remote_chute("c1"))
    report = rig.reconciler.run()
    assert report.remote.chutes_added == ["c1"] and not report.errors
    assert rows(db, "SELECT chute_id, version FROM chutes") == [("c1", "1")]
    assert rows(db, "SELECT chute_id FROM deployments") == [("c1",)]
    # a new version: the row follows, the running deployment stays
    rig.validator.add(remote_chute("c1", version="2", chutes_version="0.3.6"))
    report = rig.reconciler.run()
    assert report.remote.chutes_updated == ["c1"]
    assert rows(db, "SELECT version, chutes_version FROM chutes") == [("2", "0.3.6")]
    assert manifests.code_configmap_name("c1", "2") in rig.kube.configmaps
    assert rows(db, "SELECT count(*) FROM deployments") == [(1,)]
    # the validator no longer lists it: its deployment goes, then the row and its code
    rig.validator.withdrawn.add("c1")  # its only chute: an empty list, believed after a while
    report = believed_empty(rig, db)
    assert report.remote.chutes_removed == ["c1"] and not report.errors
    assert rows(db, "SELECT count(*) FROM chutes") == [(0,)]
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]
    assert not [n for n in rig.kube.configmaps if n.startswith("chute-code")]
    assert quiet(rig.reconciler.run())


def test_chute_of_another_validator_is_left_alone(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO chutes (chute_id, validator, name, image, code, filename, ref_str,"
            " version, supported_gpus, gpu_count) VALUES ('x', 'other-validator', 'x',"
            " 'u/i:1', '', 'app.py', 'app:chute', '1', '{h200}', 1)"
        )
    assert quiet(rig.reconciler.run())
    assert rows(db, "SELECT chute_id FROM chutes") == [("x",)]


def test_instances_fill_and_sync(rig: Rig, db: psycopg2.extensions.connection) -> None:
    dep, config = deploy(rig, db, "c1")
    assert rows(db, STATE_SQL) == [(dep, "c1", None, False, True, False, False)]
    # the validator made the instance while its events were lost
    inst = rig.validator.add_instance("c1", config)
    assert rig.reconciler.run().remote.instances_synced == [dep]
    assert rows(db, STATE_SQL) == [(dep, "c1", inst.instance_id, False, True, False, False)]
    rig.validator.add_instance("c1", config, inst.instance_id, active=True, verified=True)
    assert rig.reconciler.run().remote.instances_synced == [dep]
    assert rows(db, STATE_SQL) == [(dep, "c1", inst.instance_id, True, False, True, True)]
    assert rows(db, "SELECT instance_id, verified_at IS NOT NULL FROM deployment_audit") == [
        (inst.instance_id, True)
    ]
    # deactivated remotely: local `active` follows, nothing is undeployed
    rig.validator.add_instance("c1", config, inst.instance_id, active=False, verified=True)
    assert rig.reconciler.run().remote.instances_synced == [dep]
    assert rows(db, STATE_SQL) == [(dep, "c1", inst.instance_id, False, False, True, True)]
    assert quiet(rig.reconciler.run())
    assert rig.validator.deleted_instances == []


def test_vanished_instance_after_the_grace(rig: Rig, db: psycopg2.extensions.connection) -> None:
    young, young_cfg = deploy(rig, db, "c1")
    old, old_cfg = deploy(rig, db, "c2")
    for chute, cfg in (("c1", young_cfg), ("c2", old_cfg)):
        rig.validator.add_instance(chute, cfg, active=True)
    rig.reconciler.run()
    rig.validator.instance_rows.clear()  # the validator dropped both instances
    age(db, old, 601)
    age(db, young, 30)  # launched a moment ago: inside the instance-creation window
    report = believed_empty(rig, db)  # no instance listed at all: believed after a while
    assert report.remote.instances_vanished == [old] and not report.errors
    assert rows(db, "SELECT deployment_id FROM deployments") == [(young,)]
    assert rig.validator.deleted_instances == []  # gone there already: no DELETE back
    assert rows(db, "SELECT count(*) FROM gpus WHERE deployment_id = %s", old) == [(0,)]
    age(db, young, 600)
    assert rig.reconciler.run().remote.instances_vanished == [young]
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]


def test_an_empty_list_that_recovers_removes_nothing(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    """A validator that briefly lists no chutes and no instances (a broken deploy, an empty
    database behind it) undeploys nothing; its count starts again after a whole answer."""
    dep, config = deploy(rig, db, "c1")
    inst = rig.validator.add_instance("c1", config, active=True, verified=True)
    age(db, dep, 3600)
    rig.reconciler.run()
    listed = dict(rig.validator.instance_rows)
    for _ in range(2):
        for _ in range(rig.settings.empty_list_rounds - 1):
            rig.validator.withdrawn.add("c1")
            rig.validator.instance_rows.clear()
            report = rig.reconciler.run()
            assert report.remote.empty_lists_distrusted == [rig.validator_hotkey]
            assert quiet(report) and not report.remote.chutes_removed
        rig.validator.withdrawn.discard("c1")  # back, whole
        rig.validator.instance_rows.update(listed)
        assert rig.reconciler.run().remote.empty_lists_distrusted == []
    assert rows(db, "SELECT deployment_id, instance_id FROM deployments") == [
        (dep, inst.instance_id)
    ]
    assert rig.validator.deleted_instances == []


def test_a_new_miner_with_nothing_is_not_suspicious(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    """Empty lists with nothing here of that validator are simply empty."""
    report = rig.reconciler.run()
    assert report.remote.empty_lists_distrusted == [] and quiet(report)


def test_rolling_update_chutes_are_left_to_their_handler(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    dep, cfg = deploy(rig, db, "c1")
    inst = rig.validator.add_instance("c1", cfg, active=True)
    rig.reconciler.run()
    rig.validator.instance_rows.clear()
    rig.validator.add_instance("c1", "cfg-new-version")  # the replacement, not ours yet
    rig.validator.rolling.add("c1")
    age(db, dep, 3600)
    assert quiet(rig.reconciler.run())
    assert rows(db, "SELECT instance_id FROM deployments") == [(inst.instance_id,)]
    assert rig.validator.deleted_instances == []


def test_remote_orphans_are_deleted(rig: Rig, db: psycopg2.extensions.connection) -> None:
    dep, cfg = deploy(rig, db, "c1")
    known = rig.validator.add_instance("c1", cfg)
    orphan = rig.validator.add_instance("c1", "cfg-nobody-here")
    no_config = rig.validator.add_instance("c2", None)
    someone_else = rig.validator.add_instance("c1", "cfg-x", miner_hotkey="5Other")
    report = rig.reconciler.run()
    assert sorted(report.remote.remote_orphans_deleted) == sorted(
        [orphan.instance_id, no_config.instance_id]
    )
    assert sorted(rig.validator.deleted_instances) == sorted(
        [("c1", orphan.instance_id), ("c2", no_config.instance_id)]
    )
    assert set(rig.validator.instance_rows) == {known.instance_id, someone_else.instance_id}
    assert rows(db, "SELECT deployment_id FROM deployments") == [(dep,)]
    assert quiet(rig.reconciler.run())


def test_an_event_newer_than_the_lists_wins(rig: Rig, db: psycopg2.extensions.connection) -> None:
    """The lists are read, then an instance event is handled, then reconcile compares: the
    older lists neither deactivate the instance nor undeploy a deployment whose instance was
    created a moment ago (long after its launch)."""
    dep, cfg = deploy(rig, db, "c1")
    slow, slow_cfg = deploy(rig, db, "c2")
    age(db, slow, 900)  # an image that took 15 minutes to pull
    inst = rig.validator.add_instance("c1", cfg, verified=True)
    rig.reconciler.run()
    events = [
        (
            "instance_activated",
            {"chute_id": "c1", "instance_id": inst.instance_id, "config_id": cfg},
        ),
        ("instance_created", {"chute_id": "c2", "instance_id": "i-new", "config_id": slow_cfg}),
    ]

    def meanwhile() -> None:
        for event_type, data in events:
            rig.handle(event_type, **data)
        rig.validator.after_instances = None

    rig.validator.after_instances = meanwhile
    report = rig.reconciler.run()
    assert report.remote.changes() == 0 and not report.errors
    got = rows(db, "SELECT deployment_id, instance_id, active FROM deployments")
    assert sorted(got) == sorted([(dep, inst.instance_id, True), (slow, "i-new", False)])


def waits_for_the_chute_lock(
    rig: Rig,
    db: psycopg2.extensions.connection,
    work: Callable[[], object],
    chutes: tuple[int, int],
) -> None:
    """`work` touches chute c1 while someone else holds c1's lock: it waits (the chute count
    stays chutes[0]) and finishes once the lock is free (chutes[1])."""
    lock = rig.scheduler.chute_lock("c1")
    lock.acquire()
    try:
        worker = threading.Thread(target=work)
        worker.start()
        worker.join(0.5)
        assert worker.is_alive()
        assert rows(db, "SELECT count(*) FROM chutes") == [(chutes[0],)]
    finally:
        lock.release()
    worker.join(30)
    assert not worker.is_alive()
    assert rows(db, "SELECT count(*) FROM chutes") == [(chutes[1],)]


def test_reconcile_waits_for_an_event_about_the_same_chute(
    rig: Rig, db: psycopg2.extensions.connection
) -> None:
    # its only chute withdrawn: an empty list, believed at once here
    update = {"empty_list_rounds": 1}
    rig.settings = rig.scheduler.settings = rig.settings.model_copy(update=update)
    deploy(rig, db, "c1")
    rig.validator.withdrawn.add("c1")
    waits_for_the_chute_lock(rig, db, rig.reconciler.run, (1, 0))


def test_event_handlers_take_the_chute_lock(rig: Rig, db: psycopg2.extensions.connection) -> None:
    rig.validator.add(remote_chute("c1"))
    created = functools.partial(rig.handle, "chute_created", chute_id="c1", version="1")
    waits_for_the_chute_lock(rig, db, created, (0, 1))


def drift(rig: Rig, db: psycopg2.extensions.connection) -> dict[str, Any]:
    """Everything reconcile would repair destructively: a withdrawn chute with a deployment,
    a deployment whose instance vanished, a remote orphan."""
    gone_dep, gone_cfg = deploy(rig, db, "gone")
    dep, cfg = deploy(rig, db, "c1")
    rig.validator.add_instance("gone", gone_cfg, active=True)
    inst = rig.validator.add_instance("c1", cfg, active=True)
    assert not rig.reconciler.run().errors
    rig.validator.withdrawn.add("gone")
    del rig.validator.instance_rows[inst.instance_id]
    orphan = rig.validator.add_instance("c1", "cfg-orphan")
    age(db, dep, 3600)
    rig.kube.configmaps["chute-code-stale"] = {"metadata": {"name": "chute-code-stale"}}
    return {"gone": gone_dep, "dep": dep, "orphan": orphan.instance_id}


@pytest.mark.parametrize("failure", ["cut_lists", "down"])
def test_no_destructive_step_without_a_whole_refresh(
    rig: Rig, db: psycopg2.extensions.connection, failure: str
) -> None:
    """A validator that cuts its streams off (or is down) is skipped: its chutes, deployments
    and instances stay as they are, an alert metric says so; the Kubernetes steps still run.
    The next whole refresh repairs everything."""
    d = drift(rig, db)
    before = rows(db, STATE_SQL)
    setattr(rig.validator, failure, True)
    report = rig.reconciler.run()
    assert report.remote.validators_skipped == [rig.validator_hotkey]
    assert report.remote.changes() == 0 and report.undeployed == []
    assert rows(db, STATE_SQL) == before
    assert rows(db, "SELECT count(*) FROM chutes") == [(2,)]
    assert rig.validator.deleted_instances == []
    assert stale(rig) == 1.0
    assert "configmap chute-code-stale" in report.orphans_deleted  # Kubernetes side: done
    setattr(rig.validator, failure, False)
    report = rig.reconciler.run()
    assert stale(rig) == 0.0 and not report.errors
    assert report.remote.chutes_removed == ["gone"]
    assert report.remote.instances_vanished == [d["dep"]]
    assert report.remote.remote_orphans_deleted == [d["orphan"]]
    assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]


def test_a_second_reconcile_changes_nothing(rig: Rig, db: psycopg2.extensions.connection) -> None:
    drift(rig, db)
    rig.validator.add(remote_chute("new"))
    first = rig.reconciler.run()
    assert first.remote.changes() >= 4 and not first.errors
    state = rows(db, STATE_SQL), rows(db, "SELECT chute_id, version FROM chutes")
    calls = list(rig.validator.deleted_instances), list(rig.validator.launches)
    second = rig.reconciler.run()
    assert quiet(second), second
    assert (rows(db, STATE_SQL), rows(db, "SELECT chute_id, version FROM chutes")) == state
    assert (rig.validator.deleted_instances, rig.validator.launches) == calls


def test_over_http_against_the_standin_validator(
    make_settings: SettingsFactory,
    db: psycopg2.extensions.connection,
    miner_key: Keypair,
    validator_key: Keypair,
) -> None:
    """The same repairs through the real client and the validator's routes (signed D2,
    streamed lists, DELETE /instances/...)."""
    api = MinerApiStandin(miner_key.ss58_address).start()
    client = HttpMinerValidator(miner_key, timeout_s=5, pause_s=0.01)
    validators = {
        "defaultRegistry": "registry.example",
        "defaultApi": api.url,
        "supported": [
            {
                "hotkey": validator_key.ss58_address,
                "registry": "r",
                "api": api.url,
                "socket": api.url,
            }
        ],
    }
    rig = make_rig(make_settings(validators=json.dumps(validators)), empty_list_rounds=1)
    rig.scheduler.validator = client
    try:
        add_server(db, "uid-1", name="gpu-1", validator=rig.validator_hotkey)
        rig.kube.add_node(node("gpu-1", "uid-1"))
        api.add_chute("c1")  # published while the scheduler was away
        report = rig.reconciler.run()
        assert report.remote.chutes_added == ["c1"] and not report.errors
        [(dep, config)] = rows(db, "SELECT deployment_id, config_id FROM deployments")
        iid = api.add_instance("c1", config, active=True, verified=True)
        orphan = api.add_instance("c1", "cfg-unknown")
        report = rig.reconciler.run()
        assert report.remote.instances_synced == [dep]
        assert report.remote.remote_orphans_deleted == [orphan]
        assert rows(db, "SELECT instance_id, active, stub FROM deployments") == [(iid, True, False)]
        # the chute is withdrawn, but the list breaks off: nothing happens
        api.state.chutes.clear()
        api.state.cut_after = 0
        report = rig.reconciler.run()
        assert report.remote.validators_skipped == [rig.validator_hotkey]
        assert rows(db, "SELECT count(*) FROM chutes") == [(1,)]
        api.state.cut_after = None
        report = rig.reconciler.run()
        assert report.remote.chutes_removed == ["c1"] and not report.errors
        assert rows(db, "SELECT count(*) FROM deployments") == [(0,)]
        assert api.state.deleted_instances == [("c1", orphan), ("c1", iid)]
        assert api.state.instances == {}
        assert quiet(rig.reconciler.run())
        assert api.state.bad_signatures == []
    finally:
        rig.close()
        client.close()
        api.stop()


class ByApi:
    """Two validators, each its own in-memory stand-in, picked by the API URL of the call."""

    def __init__(self, validators: dict[str, MemoryMinerValidator]) -> None:
        self.validators = validators

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(api: str, *args: Any, **kw: Any) -> Any:
            return getattr(self.validators[api], name)(api, *args, **kw)

        return call


def test_each_validator_on_its_own(
    make_settings: SettingsFactory, db: psycopg2.extensions.connection, validator_key: Keypair
) -> None:
    """One validator down does not hold back the other: the reachable one is reconciled, the
    down one keeps everything and is the one the alert metric names."""
    second = Keypair.create_from_mnemonic(Keypair.generate_mnemonic()).ss58_address
    entries = [(validator_key.ss58_address, "http://v1.invalid"), (second, "http://v2.invalid")]
    validators = {
        "defaultRegistry": "r",
        "defaultApi": entries[0][1],
        "supported": [
            {"hotkey": hk, "registry": "r", "api": api, "socket": api} for hk, api in entries
        ],
    }
    rig = make_rig(make_settings(validators=json.dumps(validators)), empty_list_rounds=1)
    stand_ins = {api: MemoryMinerValidator() for _, api in entries}
    rig.scheduler.validator = ByApi(stand_ins)
    try:
        for (_, api), chute in zip(entries, ("a1", "b1"), strict=True):
            stand_ins[api].add(remote_chute(chute))
        report = rig.reconciler.run()
        assert sorted(report.remote.chutes_added) == ["a1", "b1"] and not report.errors
        assert rows(db, "SELECT chute_id, validator FROM chutes ORDER BY 1") == [
            ("a1", entries[0][0]),
            ("b1", second),
        ]
        for (_, api), chute in zip(entries, ("a1", "b1"), strict=True):
            stand_ins[api].withdrawn.add(chute)
        stand_ins[entries[0][1]].down = True
        report = rig.reconciler.run()
        assert report.remote.validators_skipped == [entries[0][0]]
        assert report.remote.chutes_removed == ["b1"]
        assert rows(db, "SELECT chute_id FROM chutes") == [("a1",)]
        assert (
            REGISTRY.get_sample_value("gepetto_validator_view_stale", {"validator": entries[0][0]})
            == 1.0
        )
        assert (
            REGISTRY.get_sample_value("gepetto_validator_view_stale", {"validator": second}) == 0.0
        )
    finally:
        rig.close()
