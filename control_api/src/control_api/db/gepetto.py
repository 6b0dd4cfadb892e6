"""The scheduler's SQL (claims and releases: db/claims.py): the snapshot strategies read,
chute rows, instance bookkeeping by the validator's ids, and what reconcile compares.
Every write is idempotent, so a redelivered event changes nothing the second time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from psycopg2.extensions import connection

from control_api.db.queries import InventoryVersion, inventory_version
from control_api.scheduler.model import ChuteView, DeploymentView, ServerView
from control_api.schemas.gepetto import RemoteChute

UNHEALTHY = ("NotReady", "NoGpuCapacity", "LabelsLost", "Missing", "Deleting")
_T = TypeVar("_T")

_SERVERS = """
SELECT s.server_id, s.name, s.validator, s.hourly_cost, s.gpu_count, s.locked, s.status,
       g.model_short_ref, g.verified, g.free
FROM servers s LEFT JOIN (
    SELECT server_id, model_short_ref, count(*) FILTER (WHERE verified) AS verified,
           count(*) FILTER (WHERE verified AND deployment_id IS NULL) AS free
    FROM gpus {gpus_where} GROUP BY server_id, model_short_ref
) g ON g.server_id = s.server_id
{where}
ORDER BY s.server_id COLLATE "C"
"""
_DEPLOYMENTS = """
SELECT d.deployment_id, d.chute_id, d.server_id, coalesce(h.n, 0), d.job_id, d.active, d.stub,
       extract(epoch FROM d.created_at), extract(epoch FROM d.verified_at),
       d.terminating_at IS NOT NULL, d.instance_id
FROM deployments d
LEFT JOIN (SELECT deployment_id, count(*) AS n FROM gpus WHERE {gpus_where}
           GROUP BY deployment_id) h ON h.deployment_id = d.deployment_id
{where}
ORDER BY d.created_at, d.deployment_id COLLATE "C"
"""
_CHUTES = """
SELECT chute_id, validator, version, gpu_count, supported_gpus, ban_reason, name, chutes_version
FROM chutes {where} ORDER BY chute_id COLLATE "C"
"""
# Ids are ordered by code point ("C"), as Python orders the incrementally updated lists.


State = tuple[list[ServerView], list[ChuteView], list[DeploymentView]]


def read_state(conn: connection, disk: Mapping[str, float | None] | None = None) -> State:
    """Servers (GPU counts per model), chutes (no code) and deployments from one snapshot:
    the caller runs this in a REPEATABLE READ, READ ONLY transaction (`snapshot_tx`)."""
    servers = _with_disk(_read_servers(conn), disk or {})
    return servers, _read_chutes(conn), _read_deployments(conn)


def _with_disk(servers: list[ServerView], disk: Mapping[str, float | None]) -> list[ServerView]:
    return [_disk_of(s, disk) for s in servers]


def _disk_of(server: ServerView, disk: Mapping[str, float | None]) -> ServerView:
    value = disk.get(server.name)
    return server if value == server.free_disk_gb else replace(server, free_disk_gb=value)


def _read_servers(conn: connection, ids: Collection[str] | None = None) -> list[ServerView]:
    """All servers, or those of `ids` (gone ones are simply absent); no disk figures."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    sql = _SERVERS.format(
        gpus_where="" if ids is None else "WHERE server_id = ANY(%(ids)s)",
        where="" if ids is None else "WHERE s.server_id = ANY(%(ids)s)",
    )
    with conn.cursor() as cur:
        cur.execute(sql, {"ids": list(ids or ())})
        for row in cur.fetchall():
            rows.setdefault(row[0], []).append(row)
    servers = []
    for server_id, group in rows.items():
        first = group[0]
        verified = {r[7]: int(r[8]) for r in group if r[7] is not None}
        free = {r[7]: int(r[9]) for r in group if r[7] is not None}
        model = max(verified, key=lambda m: (verified[m], m)) if verified else ""
        servers.append(
            ServerView(
                server_id=server_id,
                name=first[1],
                validator=first[2],
                hourly_cost=float(first[3]),
                gpu_count=int(first[4]),
                model=model,
                locked=bool(first[5]),
                verified_by_model=verified,
                free_by_model=free,
                ready=first[6] not in UNHEALTHY,
            )
        )
    return servers


def _read_chutes(conn: connection, ids: Collection[str] | None = None) -> list[ChuteView]:
    sql = _CHUTES.format(where="" if ids is None else "WHERE chute_id = ANY(%(ids)s)")
    with conn.cursor() as cur:
        cur.execute(sql, {"ids": list(ids or ())})
        return [
            ChuteView(r[0], r[1], r[2], int(r[3]), tuple(r[4] or ()), r[5], r[6], r[7])
            for r in cur.fetchall()
        ]


def _read_deployments(conn: connection, ids: Collection[str] | None = None) -> list[DeploymentView]:
    sql = _DEPLOYMENTS.format(
        gpus_where="deployment_id IS NOT NULL" if ids is None else "deployment_id = ANY(%(ids)s)",
        where="" if ids is None else "WHERE d.deployment_id = ANY(%(ids)s)",
    )
    with conn.cursor() as cur:
        cur.execute(sql, {"ids": list(ids or ())})
        return [
            DeploymentView(
                deployment_id=r[0],
                chute_id=r[1],
                server_id=r[2],
                gpu_count=int(r[3]),
                job_id=r[4],
                active=bool(r[5]),
                stub=bool(r[6]),
                created_at=float(r[7]),
                verified_at=None if r[8] is None else float(r[8]),
                terminating=bool(r[9]),
                instance_id=r[10],
            )
            for r in cur.fetchall()
        ]


CHANGES_LIMIT = 2000  # more change rows than this since the cached version: read everything


def _dep_order(d: DeploymentView) -> tuple[float, str]:
    return d.created_at, d.deployment_id


@dataclass(frozen=True)
class _Cached:
    """One inventory version, as dicts by id (no disk figures) and as the lists `read`
    returns (disk figures applied). Never changed: an update makes a new one."""

    version: InventoryVersion
    servers: dict[str, ServerView]
    chutes: dict[str, ChuteView]
    deployments: dict[str, DeploymentView]
    by_name: dict[str, str]  # server name -> id, for the disk figures
    disk: dict[str, float | None]
    shown: dict[str, ServerView]  # servers with `disk` applied
    state: State

    @classmethod
    def make(
        cls,
        version: InventoryVersion,
        servers: dict[str, ServerView],
        chutes: dict[str, ChuteView],
        deployments: dict[str, DeploymentView],
        disk: dict[str, float | None],
        shown: dict[str, ServerView],
        lists: tuple[list[ChuteView] | None, list[DeploymentView] | None],
    ) -> _Cached:
        chute_list = lists[0]
        if chute_list is None:
            chute_list = [chutes[k] for k in sorted(chutes)]
        dep_list = lists[1]
        if dep_list is None:
            dep_list = sorted(deployments.values(), key=_dep_order)
        state = ([shown[k] for k in sorted(shown)], chute_list, dep_list)
        by_name = {s.name: k for k, s in servers.items()}
        return cls(version, servers, chutes, deployments, by_name, disk, shown, state)


class StateCache:
    """`read_state` that re-reads only what changed. The inventory version (migration 0003:
    bumped by every committed change to servers, GPUs, deployments or chutes) says whether
    anything did, and the change log of migration 0005 which servers, deployments and chutes:
    only those rows are read again and patched into a copy of the cached state. Everything is
    read in the caller's REPEATABLE READ transaction, so a hit, an update and a full read see
    the same consistent state. A full read happens at the first call, after a TRUNCATE, when
    the log was pruned past the cached version, or when more than CHANGES_LIMIT rows changed.
    Disk figures are applied again only to the servers whose figure changed. Thread-safe; a
    reader whose snapshot is older than the cached state reads everything and keeps the
    newer state cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self.hits = self.updates = self.misses = 0

    def read(self, conn: connection, disk: Mapping[str, float | None] | None = None) -> State:
        figures = dict(disk or {})
        version = inventory_version(conn)
        with self._lock:
            cached = self._cached
        if cached is not None and cached.version == version:
            if cached.disk != figures:
                cached = self._keep(_patch(conn, cached, version, _NOTHING, figures))
            with self._lock:
                self.hits += 1
            return cached.state
        changes = None
        if cached is not None and cached.version[0] == version[0]:
            if cached.version[1] < version[1]:
                changes = _changes(conn, cached.version[1], version[1])
        if changes is None or cached is None:
            fresh = _full(conn, version, figures)
            with self._lock:
                self.misses += 1
        else:
            fresh = _patch(conn, cached, version, changes, figures)
            with self._lock:
                self.updates += 1
        return self._keep(fresh).state

    def _keep(self, fresh: _Cached) -> _Cached:
        with self._lock:
            old = self._cached
            if old is None or old.version[0] != fresh.version[0]:
                self._cached = fresh
            elif old.version[1] <= fresh.version[1]:
                self._cached = fresh
        return fresh


Changes = Mapping[str, Collection[str]]  # kind ('s', 'd', 'c') -> ids
_NOTHING: Changes = {"s": (), "d": (), "c": ()}


def _changes(conn: connection, since: int, upto: int) -> Changes | None:
    """The ids changed by versions since+1..upto, or None when the log cannot say (a
    TRUNCATE, versions pruned or older than migration 0005, more than CHANGES_LIMIT rows)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT version, kind, key FROM inventory_changes WHERE version > %s LIMIT %s",
            (since, CHANGES_LIMIT + 1),
        )
        rows = cur.fetchall()
    if len(rows) > CHANGES_LIMIT or len({r[0] for r in rows}) != upto - since:
        return None
    out: dict[str, set[str]] = {"s": set(), "d": set(), "c": set()}
    for _, kind, key in rows:
        if kind not in out:
            return None
        out[kind].add(key)
    return out


def _full(conn: connection, version: InventoryVersion, figures: dict[str, float | None]) -> _Cached:
    servers = {s.server_id: s for s in _read_servers(conn)}
    chutes = _read_chutes(conn)
    deps = _read_deployments(conn)
    return _Cached.make(
        version,
        servers,
        {c.chute_id: c for c in chutes},
        {d.deployment_id: d for d in deps},
        figures,
        {k: _disk_of(s, figures) for k, s in servers.items()},
        (chutes, deps),
    )


def _patched(
    rows: Iterable[_T], key: Callable[[_T], str], ids: Collection[str], old: dict[str, _T]
) -> dict[str, _T]:
    new = dict(old)
    for i in ids:
        new.pop(i, None)
    new.update((key(r), r) for r in rows)
    return new


def _patch(
    conn: connection,
    cached: _Cached,
    version: InventoryVersion,
    changes: Changes,
    figures: dict[str, float | None],
) -> _Cached:
    """`cached` with the changed rows read again and the disk figures applied."""
    s_ids, c_ids, d_ids = changes["s"], changes["c"], changes["d"]
    servers, chutes, deps = cached.servers, cached.chutes, cached.deployments
    if s_ids:
        servers = _patched(_read_servers(conn, s_ids), _server_id, s_ids, servers)
    if c_ids:
        chutes = _patched(_read_chutes(conn, c_ids), _chute_id, c_ids, chutes)
    if d_ids:
        deps = _patched(_read_deployments(conn, d_ids), _deployment_id, d_ids, deps)
    names = {n for n in figures.keys() | cached.disk.keys() if figures.get(n) != cached.disk.get(n)}
    shown = cached.shown
    if s_ids or names:
        by_name = {s.name: k for k, s in servers.items()} if s_ids else cached.by_name
        dirty = set(s_ids) | {by_name[n] for n in names if n in by_name}
        shown = dict(shown)
        for k in dirty:
            shown.pop(k, None)
            if k in servers:
                shown[k] = _disk_of(servers[k], figures)
    lists = (None if c_ids else cached.state[1], None if d_ids else cached.state[2])
    return _Cached.make(version, servers, chutes, deps, figures, shown, lists)


def _server_id(s: ServerView) -> str:
    return s.server_id


def _chute_id(c: ChuteView) -> str:
    return c.chute_id


def _deployment_id(d: DeploymentView) -> str:
    return d.deployment_id


def snapshot_tx(conn: connection) -> None:
    """Start the connection's transaction as one consistent read."""
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def upsert_chute(conn: connection, validator: str, chute: RemoteChute) -> bool:
    """Insert or update the local chute row; True when something changed."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO chutes (chute_id, validator, name, image, code, filename, ref_str,"
            " version, supported_gpus, gpu_count, chutes_version, ban_reason)"
            " VALUES (%(id)s, %(v)s, %(name)s, %(image)s, %(code)s, %(file)s, %(ref)s, %(ver)s,"
            " %(gpus)s, %(n)s, %(cv)s, %(ban)s)"
            " ON CONFLICT (chute_id) DO UPDATE SET validator = EXCLUDED.validator,"
            " name = EXCLUDED.name, image = EXCLUDED.image, code = EXCLUDED.code,"
            " filename = EXCLUDED.filename, ref_str = EXCLUDED.ref_str,"
            " version = EXCLUDED.version, supported_gpus = EXCLUDED.supported_gpus,"
            " gpu_count = EXCLUDED.gpu_count, chutes_version = EXCLUDED.chutes_version,"
            " ban_reason = EXCLUDED.ban_reason, updated_at = now()"
            " WHERE (chutes.validator, chutes.name, chutes.image, chutes.code, chutes.filename,"
            " chutes.ref_str, chutes.version, chutes.supported_gpus, chutes.gpu_count,"
            " chutes.chutes_version, chutes.ban_reason) IS DISTINCT FROM"
            " (EXCLUDED.validator, EXCLUDED.name, EXCLUDED.image, EXCLUDED.code,"
            " EXCLUDED.filename, EXCLUDED.ref_str, EXCLUDED.version, EXCLUDED.supported_gpus,"
            " EXCLUDED.gpu_count, EXCLUDED.chutes_version, EXCLUDED.ban_reason)",
            {
                "id": chute.chute_id,
                "v": validator,
                "name": chute.name,
                "image": chute.image,
                "code": chute.code,
                "file": chute.filename,
                "ref": chute.ref_str,
                "ver": chute.version,
                "gpus": sorted(chute.supported_gpus),
                "n": chute.gpu_count,
                "cv": chute.chutes_version,
                "ban": chute.ban_reason,
            },
        )
        return bool(cur.rowcount)


@dataclass(frozen=True)
class ChuteRow:
    chute_id: str
    validator: str
    version: str
    image: str
    code: str
    filename: str
    ref_str: str
    chutes_version: str | None
    gpu_count: int
    supported_gpus: tuple[str, ...]


def get_chute(conn: connection, chute_id: str) -> ChuteRow | None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT chute_id, validator, version, image, code, filename, ref_str,"
            " chutes_version, gpu_count, supported_gpus FROM chutes WHERE chute_id = %s",
            (chute_id,),
        )
        r = cur.fetchone()
    if r is None:
        return None
    return ChuteRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], tuple(r[9] or ()))


def delete_chute(conn: connection, chute_id: str) -> bool:
    """False while deployments still reference it (RESTRICT) or when it is gone."""
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM chutes c WHERE chute_id = %s"
            " AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.chute_id = c.chute_id)",
            (chute_id,),
        )
        return bool(cur.rowcount)


def set_image(
    conn: connection, chute_ids: list[str], image: str, chutes_version: str | None
) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE chutes SET image = %s, chutes_version = coalesce(%s, chutes_version),"
            " updated_at = now() WHERE chute_id = ANY(%s)"
            " AND (image, chutes_version) IS DISTINCT FROM (%s, coalesce(%s, chutes_version))",
            (image, chutes_version, chute_ids, image, chutes_version),
        )
        return cur.rowcount


def gpu_verified(conn: connection, gpu_id: str) -> bool:
    """`WHERE gpu_id` (upstream wrote `WHERE server_id = gpu_id`: a no-op)."""
    with conn.cursor() as cur:
        cur.execute("UPDATE gpus SET verified = true WHERE gpu_id = %s AND NOT verified", (gpu_id,))
        return bool(cur.rowcount)


def instance_created(conn: connection, config_id: str, instance_id: str) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE deployments SET instance_id = %s WHERE config_id = %s"
            " AND instance_id IS DISTINCT FROM %s",
            (instance_id, config_id, instance_id),
        )
        return bool(cur.rowcount)


def instance_verified(conn: connection, instance_id: str) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE deployments SET verified_at = now()"
            " WHERE instance_id = %s AND verified_at IS NULL",
            (instance_id,),
        )
        return bool(cur.rowcount)


def instance_activated(conn: connection, config_id: str, instance_id: str | None) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE deployments SET active = true, stub = false,"
            " activated_at = coalesce(activated_at, now()),"
            " instance_id = coalesce(instance_id, %s)"
            " WHERE config_id = %s AND NOT (active AND NOT stub)",
            (instance_id, config_id),
        )
        return bool(cur.rowcount)


def set_launch(conn: connection, deployment_id: str, config_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE deployments SET config_id = %s WHERE deployment_id = %s",
            (config_id, deployment_id),
        )


def set_endpoint(conn: connection, deployment_id: str, host: str, port: int) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE deployments SET host = %s, port = %s WHERE deployment_id = %s",
            (host, port, deployment_id),
        )


def deployment_ids(
    conn: connection,
    *,
    chute_id: str | None = None,
    job_id: str | None = None,
    instance_id: str | None = None,
    config_id: str | None = None,
    server_id: str | None = None,
) -> list[str]:
    """Deployments matching every given field (all deployments when none is given)."""
    where, params = ["TRUE"], []
    for column, value in (
        ("chute_id", chute_id),
        ("job_id", job_id),
        ("instance_id", instance_id),
        ("config_id", config_id),
        ("server_id", server_id),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT deployment_id FROM deployments WHERE {' AND '.join(where)}"
            " ORDER BY created_at, deployment_id",
            tuple(params),
        )
        return [r[0] for r in cur.fetchall()]


def chute_has_deployments(conn: connection, chute_id: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM deployments WHERE chute_id = %s)", (chute_id,))
        row = cur.fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class ServerRow:
    server_id: str
    name: str
    validator: str
    status: str
    ip_address: str | None
    cpu_per_gpu: int
    memory_per_gpu: int
    locked: bool


def servers(conn: connection) -> list[ServerRow]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT server_id, name, validator, status, ip_address, cpu_per_gpu,"
            " memory_per_gpu, locked FROM servers ORDER BY name"
        )
        return [ServerRow(*r) for r in cur.fetchall()]


def get_server(conn: connection, server_id: str) -> ServerRow | None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT server_id, name, validator, status, ip_address, cpu_per_gpu,"
            " memory_per_gpu, locked FROM servers WHERE server_id = %s",
            (server_id,),
        )
        r = cur.fetchone()
    return None if r is None else ServerRow(*r)


def set_status(conn: connection, server_id: str, status: str) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE servers SET status = %s WHERE server_id = %s AND status <> %s",
            (status, server_id, status),
        )
        return bool(cur.rowcount)


def server_gpus(conn: connection, server_id: str) -> list[tuple[str, str | None]]:
    """(gpu_id, validator) of a server's GPUs."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT gpu_id, validator FROM gpus WHERE server_id = %s ORDER BY gpu_id", (server_id,)
        )
        return [(r[0], r[1]) for r in cur.fetchall()]


def delete_server_if_empty(conn: connection, server_id: str) -> bool:
    """Delete the server (its GPUs cascade) once no deployment is on it."""
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM servers s WHERE server_id = %s"
            " AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.server_id = s.server_id)",
            (server_id,),
        )
        return bool(cur.rowcount)


@dataclass(frozen=True)
class DeploymentRow:
    deployment_id: str
    chute_id: str
    server_id: str
    stub: bool
    job_id: str | None
    instance_id: str | None
    config_id: str | None
    age_s: float
    terminating: bool


def deployments(conn: connection) -> list[DeploymentRow]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT deployment_id, chute_id, server_id, stub, job_id, instance_id, config_id,"
            " extract(epoch FROM now() - created_at), terminating_at IS NOT NULL"
            " FROM deployments ORDER BY created_at"
        )
        return [
            DeploymentRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], float(r[7]), r[8])
            for r in cur.fetchall()
        ]


def code_configmaps_in_use(conn: connection) -> list[tuple[str, str]]:
    """(chute_id, version) of every local chute and every deployment (which may still run an
    older version): their code ConfigMaps are wanted."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT chute_id, version FROM chutes UNION SELECT chute_id, version FROM deployments"
        )
        return [(r[0], r[1]) for r in cur.fetchall()]


# reconcile against a validator (runtime contract §9.3) ---------------------------------


@dataclass(frozen=True)
class ChuteFingerprint:
    """What reconcile compares between a local chute and the validator's list. Code is left
    out: the list may not carry it, and a code change comes with a new version."""

    version: str
    name: str | None
    image: str
    filename: str
    ref_str: str
    gpu_count: int
    chutes_version: str | None
    supported_gpus: tuple[str, ...]
    ban_reason: str | None

    @classmethod
    def of(cls, chute: RemoteChute) -> ChuteFingerprint:
        return cls(
            chute.version, chute.name, chute.image, chute.filename, chute.ref_str,
            chute.gpu_count, chute.chutes_version, tuple(sorted(chute.supported_gpus)),
            chute.ban_reason,
        )  # fmt: skip


def chute_fingerprints(conn: connection, validator: str) -> dict[str, ChuteFingerprint]:
    """The local chutes of one validator by id."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT chute_id, version, name, image, filename, ref_str, gpu_count,"
            " chutes_version, supported_gpus, ban_reason FROM chutes WHERE validator = %s",
            (validator,),
        )
        return {
            r[0]: ChuteFingerprint(
                r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(sorted(r[8] or ())), r[9]
            )
            for r in cur.fetchall()
        }


@dataclass(frozen=True)
class InstanceRow:
    """A deployment of one validator as the remote instance list is compared with it."""

    deployment_id: str
    chute_id: str
    instance_id: str | None
    config_id: str | None
    active: bool
    stub: bool
    verified: bool
    age_s: float
    terminating: bool


def instance_rows(conn: connection, validator: str) -> list[InstanceRow]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT deployment_id, chute_id, instance_id, config_id, active, stub,"
            " verified_at IS NOT NULL, extract(epoch FROM now() - created_at),"
            " terminating_at IS NOT NULL FROM deployments WHERE validator = %s"
            " ORDER BY created_at, deployment_id",
            (validator,),
        )
        return [
            InstanceRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], float(r[7]), r[8])
            for r in cur.fetchall()
        ]


def sync_instance(
    conn: connection,
    deployment_id: str,
    instance_id: str,
    *,
    was_active: bool,
    active: bool,
    verified: bool,
) -> bool:
    """Take the validator's view of a live deployment's instance: its id (when still
    missing), `active` and `verified_at` (set once). Activation also clears `stub` and stamps
    `activated_at`. `active` changes only while the row still has `was_active` (what it had
    before the validator's list was read): an `instance_activated` event handled since then
    is newer than the list and wins. True when the row was updated."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE deployments SET instance_id = coalesce(instance_id, %(iid)s),"
            " active = CASE WHEN active = %(was)s THEN %(active)s ELSE active END,"
            " stub = stub AND NOT %(active)s,"
            " activated_at = CASE WHEN %(active)s THEN coalesce(activated_at, now())"
            " ELSE activated_at END,"
            " verified_at = CASE WHEN %(verified)s THEN coalesce(verified_at, now())"
            " ELSE verified_at END"
            " WHERE deployment_id = %(dep)s AND terminating_at IS NULL",
            {
                "iid": instance_id,
                "was": was_active,
                "active": active,
                "verified": verified,
                "dep": deployment_id,
            },
        )
        return bool(cur.rowcount)
