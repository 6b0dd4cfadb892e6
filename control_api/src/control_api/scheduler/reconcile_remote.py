"""Reconcile against each validator (runtime contract §9.3): the validator's list of chutes and
its list of this miner's instances are compared with PostgreSQL, validator by validator.

1. Refresh: `GET /miner/chutes/`, `GET /miner/instances/?explicit_null=True` and
   `GET /chutes/rolling_updates`, each read whole. A validator that is down, cuts a stream or
   sends a malformed item is skipped for this round (logged, `gepetto_validator_view_stale`
   set to 1, `gepetto_validator_refresh_failures_total` counted): nothing of it is added,
   changed or deleted from a partial view.
2. Deployments (chutes in a rolling update are left to the `rolling_update` handler): the
   remote instance with a deployment's `config_id` fills a missing `instance_id`; `active` and
   `verified` follow the remote instance; a live deployment whose instance is no longer listed
   is undeployed (no DELETE back) once it is older than the instance-creation grace, so one
   launched a moment ago is not killed.
3. Remote orphans: an instance listed for this miner that no local deployment knows (by
   instance id or config id) is deleted at the validator.
4. Chutes: a chute the validator lists that is not here is handled as `chute_created`; one
   whose version or fields differ as `chute_updated`; a local chute of that validator it no
   longer lists as `chute_deleted` (its deployments undeployed, their instances DELETEd, then
   the row and ConfigMap). Last, so those deployments are not handled twice.

An empty list is not believed at once. A validator that lists no chutes while chutes of it are
stored here, or no instances while deployments here have one, is far more likely broken than
emptied: its removals (step 4) and vanished-instance undeploys (step 2) wait until it has
answered so for `empty_list_rounds` reconciles in a row (setting `EMPTY_LIST_ROUNDS`, default
3: 3 minutes at the default interval). Adding and syncing still run, and the validator is named
in `empty_lists_distrusted` meanwhile.

Local rows are read twice, around the lists. Deployment decisions rest on the rows read
before: an instance created or activated (by its event) after the lists were read is never
undone or undeployed by the older lists. Orphans are judged against the rows read after: a
deployment stores its `config_id` before its pod starts, so an instance in the lists that no
row then knows is really an orphan. Each chute's steps hold that chute's lock, which event
handlers about the chute take too (`Scheduler.chute_lock`), so they never interleave.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

from control_api.clients.miner_validator import MinerValidator
from control_api.clients.validator import ValidatorError
from control_api.db import gepetto as q
from control_api.scheduler.core import Scheduler
from control_api.schemas.gepetto import ChuteData, RemoteChute, RemoteInstance

log = logging.getLogger(__name__)
INSTANCE_GRACE_S = 600.0  # a launched deployment may take this long to show as an instance

VIEW_STALE = Gauge(
    "gepetto_validator_view_stale",
    "1 while the last reconcile could not read this validator's lists whole "
    "(its destructive steps are skipped)",
    ["validator"],
)
REFRESH_FAILURES = Counter(
    "gepetto_validator_refresh_failures_total",
    "Reconcile refreshes of a validator's lists that failed or came back partial",
    ["validator"],
)


@dataclass(frozen=True)
class ValidatorView:
    """One validator's lists, read whole."""

    hotkey: str
    api: str
    chutes: Mapping[str, RemoteChute]
    instances: Mapping[str, RemoteInstance]
    rolling: frozenset[str]


@dataclass
class RemoteReport:
    chutes_added: list[str] = field(default_factory=list)
    chutes_updated: list[str] = field(default_factory=list)
    chutes_removed: list[str] = field(default_factory=list)
    instances_synced: list[str] = field(default_factory=list)
    instances_vanished: list[str] = field(default_factory=list)
    remote_orphans_deleted: list[str] = field(default_factory=list)
    validators_skipped: list[str] = field(default_factory=list)
    empty_lists_distrusted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def changes(self) -> int:
        return sum(
            len(x)
            for x in (
                self.chutes_added, self.chutes_updated, self.chutes_removed,
                self.instances_synced, self.instances_vanished, self.remote_orphans_deleted,
            )
        )  # fmt: skip


def refresh_view(client: MinerValidator, hotkey: str, api: str, miner_ss58: str) -> ValidatorView:
    """Both lists and the rolling updates of one validator; ValidatorError when any of them
    is not whole. Instances of another miner (the list is ours; kept out all the same) and
    repeated ids (the last wins, as in the validator's own keying) are dropped."""
    chutes = {c.chute_id: c for c in client.chutes(api)}
    instances = {
        i.instance_id: i
        for i in client.instances(api)
        if i.miner_hotkey is None or i.miner_hotkey == miner_ss58
    }
    rolling = frozenset(client.rolling_updates(api))
    return ValidatorView(hotkey, api, chutes, instances, rolling)


def sync_chutes(
    s: Scheduler,
    view: ValidatorView,
    local: Mapping[str, q.ChuteFingerprint],
    report: RemoteReport,
    remove: bool = True,
) -> None:
    """`local`: this validator's chutes here, by id."""
    for chute_id, remote in sorted(view.chutes.items()):
        data = ChuteData(validator=view.hotkey, chute_id=chute_id, version=remote.version)
        mine = local.get(chute_id)
        if mine is None:
            if _step(s, report, "add", s.on_chute_created, data):
                report.chutes_added.append(chute_id)
        elif mine != q.ChuteFingerprint.of(remote):
            if _step(s, report, "update", s.on_chute_updated, data):
                report.chutes_updated.append(chute_id)
    for chute_id in sorted(set(local) - set(view.chutes)) if remove else ():
        data = ChuteData(validator=view.hotkey, chute_id=chute_id, version=local[chute_id].version)
        log.warning("scheduler.chute_gone_remotely", extra={"chute_id": chute_id})
        if _step(s, report, "remove", s.on_chute_deleted, data):
            report.chutes_removed.append(chute_id)


def sync_deployments(
    s: Scheduler,
    view: ValidatorView,
    before: list[q.InstanceRow],
    report: RemoteReport,
    grace_s: float,
    undeploy_vanished: bool = True,
) -> None:
    """`before`: the deployments as read before the lists. Decisions rest on them, so an
    event handled after the lists were read (an instance created or activated a moment ago)
    is never undone by the older list."""
    by_config = {i.config_id: i for i in view.instances.values() if i.config_id}
    for row in before:
        if row.terminating or row.chute_id in view.rolling:
            continue
        remote = view.instances.get(row.instance_id) if row.instance_id else None
        if remote is None and row.instance_id is None and row.config_id:
            remote = by_config.get(row.config_id)
        with s.chute_lock(row.chute_id):
            if remote is not None:
                if _sync_one(s, row, remote):
                    report.instances_synced.append(row.deployment_id)
            elif undeploy_vanished and row.instance_id is not None and row.age_s >= grace_s:
                log.warning(
                    "scheduler.instance_vanished",
                    extra={"deployment_id": row.deployment_id, "instance_id": row.instance_id},
                )
                s.undeploy(row.deployment_id, tell_validator=False, reason="instance vanished")
                report.instances_vanished.append(row.deployment_id)


def _sync_one(s: Scheduler, row: q.InstanceRow, remote: RemoteInstance) -> bool:
    stale = (
        row.instance_id is None
        or remote.active != row.active
        or (remote.active and row.stub)
        or (remote.verified and not row.verified)
    )
    if not stale:
        return False
    with s.db.connection() as conn:
        return q.sync_instance(
            conn,
            row.deployment_id,
            remote.instance_id,
            was_active=row.active,
            active=remote.active,
            verified=remote.verified,
        )


def delete_remote_orphans(
    client: MinerValidator, view: ValidatorView, after: list[q.InstanceRow], report: RemoteReport
) -> None:
    """`after`: the deployments as read after the lists. A deployment stores its `config_id`
    before its pod starts, so an instance in the lists that none of them knows is an orphan."""
    known = {r.instance_id for r in after if r.instance_id}
    configs = {r.config_id for r in after if r.config_id}
    for inst in sorted(view.instances.values(), key=lambda i: i.instance_id):
        if inst.instance_id in known or (inst.config_id and inst.config_id in configs):
            continue
        if inst.chute_id in view.rolling:
            continue
        log.warning(
            "scheduler.remote_orphan",
            extra={"instance_id": inst.instance_id, "chute_id": inst.chute_id},
        )
        try:
            client.delete_instance(view.api, inst.chute_id, inst.instance_id)
        except ValidatorError as exc:
            report.errors.append(f"delete instance {inst.instance_id}: {exc.reason}")
            continue
        report.remote_orphans_deleted.append(inst.instance_id)


def suspicious_emptiness(
    view: ValidatorView, chutes_here: int, before: list[q.InstanceRow]
) -> bool:
    """The validator lists nothing of something this miner has of it."""
    no_chutes = not view.chutes and chutes_here > 0
    no_instances = not view.instances and any(r.instance_id for r in before)
    return no_chutes or no_instances


def reconcile_validators(
    s: Scheduler, grace_s: float, empty_rounds: dict[str, int]
) -> RemoteReport:
    """Steps 1-4 for every supported validator, one after the other. `empty_rounds` (kept by
    the caller between rounds): per validator, how many reconciles in a row its lists came
    back suspiciously empty."""
    report = RemoteReport()
    for v in s.settings.validators.supported:
        with s.db.connection() as conn:
            before = q.instance_rows(conn, v.hotkey)
        try:
            view = refresh_view(s.validator, v.hotkey, v.api, s.settings.miner_ss58)
        except ValidatorError as exc:
            log.error(
                "scheduler.validator_view_stale",
                extra={"validator": v.hotkey, "error": exc.reason},
            )
            VIEW_STALE.labels(v.hotkey).set(1)
            REFRESH_FAILURES.labels(v.hotkey).inc()
            report.validators_skipped.append(v.hotkey)
            continue
        VIEW_STALE.labels(v.hotkey).set(0)
        with s.db.connection() as conn:
            after = q.instance_rows(conn, v.hotkey)
            local = q.chute_fingerprints(conn, v.hotkey)
        chutes_here = len(local)
        trusted = True
        if suspicious_emptiness(view, chutes_here, before):
            empty_rounds[v.hotkey] = empty_rounds.get(v.hotkey, 0) + 1
            trusted = empty_rounds[v.hotkey] >= s.settings.empty_list_rounds
            log.warning(
                "scheduler.validator_lists_empty",
                extra={
                    "validator": v.hotkey,
                    "rounds": empty_rounds[v.hotkey],
                    "acting": trusted,
                    "chutes_here": chutes_here,
                },
            )
            if not trusted:
                report.empty_lists_distrusted.append(v.hotkey)
        else:
            empty_rounds.pop(v.hotkey, None)
        sync_deployments(s, view, before, report, grace_s, undeploy_vanished=trusted)
        delete_remote_orphans(s.validator, view, after, report)
        sync_chutes(s, view, local, report, remove=trusted)
    return report


def _step(
    s: Scheduler,
    report: RemoteReport,
    what: str,
    handler: Callable[[ChuteData], None],
    data: ChuteData,
) -> bool:
    """Run one chute handler under the chute's lock (events about it wait); a failure is
    reported and the other chutes still run."""
    try:
        with s.chute_lock(data.chute_id):
            handler(data)
    except Exception as exc:  # noqa: BLE001 - one chute must not stop the others
        log.exception("scheduler.reconcile_chute_failed", extra={"chute_id": data.chute_id})
        report.errors.append(f"{what} chute {data.chute_id}: {type(exc).__name__}: {exc}")
        return False
    return True
