"""GPU claims and releases (runtime contract §8.4), the one place that assigns GPUs.

A claim is one transaction step (a savepoint inside the caller's transaction): lock the
server row `FOR NO KEY UPDATE` and re-check it is unlocked, lock the chute row and re-check it
is not banned, insert the deployment as a stub, then hand it exactly `gpu_count` free verified
GPUs of a supported model with one conditional UPDATE. Fewer rows than `gpu_count` means another
claimer won: the savepoint is rolled back and `ClaimRefused` raised, nothing changed.

Why no GPU is ever double-booked:
- the UPDATE's `deployment_id IS NULL` is re-evaluated by PostgreSQL on the newest row version
  after a concurrent claimer commits (READ COMMITTED), so of two racing claimers of a GPU one
  gets it and the other's row count comes up short;
- claims on one server take turns on its row (`FOR NO KEY UPDATE`; foreign-key checks, which
  take `FOR KEY SHARE`, do not wait for it): with `FOR SHARE` two claimers of the same two
  GPUs could each lock one candidate (`SKIP LOCKED`) and both be refused, so that nobody got
  GPUs that were free; claims on different servers still run side by side;
- migration 0004's trigger rejects any UPDATE that moves a claimed GPU to another deployment
  and any claim of an unverified GPU, and a composite foreign key keeps a GPU and its
  deployment on one server, whatever query a future change writes;
- `servers.locked` is read under that row lock: the lock route's `UPDATE servers` waits for
  claims in flight and every claim after it sees `locked = true`.

Release happens only after the pods are gone (the caller's duty): clear the GPUs, then delete
the row, in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from psycopg2.extensions import connection, cursor

RefusalReason = Literal[
    "server_missing",
    "server_locked",
    "chute_missing",
    "chute_banned",
    "validator_mismatch",
    "bad_gpu_selection",
    "not_enough_gpus",
    "deployment_exists",
]


class ClaimRefused(Exception):
    """The claim cannot be made; nothing was changed. `reason` is a stable short code."""

    def __init__(self, reason: RefusalReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: RefusalReason = reason
        self.detail = detail


def new_deployment_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ClaimRequest:
    chute_id: str
    server_id: str
    job_id: str | None = None
    gpu_ids: tuple[str, ...] | None = None  # these exact GPUs; None = any free ones
    deployment_id: str = field(default_factory=new_deployment_id)


@dataclass(frozen=True)
class Claim:
    deployment_id: str
    chute_id: str
    server_id: str
    validator: str
    version: str
    job_id: str | None
    gpu_ids: tuple[str, ...]
    host: str | None


_CANDIDATES = """
SELECT gpu_id FROM gpus
WHERE server_id = %(server)s AND verified AND deployment_id IS NULL
  AND (cardinality(%(models)s::text[]) = 0 OR model_short_ref = ANY(%(models)s::text[]))
  AND (%(ids)s::text[] IS NULL OR gpu_id = ANY(%(ids)s::text[]))
ORDER BY gpu_id
LIMIT %(n)s
FOR UPDATE SKIP LOCKED
"""
# The candidates are a CTE, evaluated exactly once: as an `IN (subquery)` the planner may
# rescan a `FOR UPDATE SKIP LOCKED ... LIMIT n` subquery, which then skips the rows this very
# statement just updated and returns n more.
_CLAIM = f"""
WITH pick AS ({_CANDIDATES})
UPDATE gpus g SET deployment_id = %(dep)s
FROM pick
WHERE g.gpu_id = pick.gpu_id AND g.deployment_id IS NULL
RETURNING g.gpu_id
"""


def claim(conn: connection, req: ClaimRequest) -> Claim:
    """Claim GPUs for a new stub deployment inside the caller's transaction (which the caller
    commits). Raises ClaimRefused, with this step undone, when any check fails."""
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT gpu_claim")
        try:
            result = _claim(cur, req)
        except BaseException:
            cur.execute("ROLLBACK TO SAVEPOINT gpu_claim")
            raise
        cur.execute("RELEASE SAVEPOINT gpu_claim")
    return result


def _claim(cur: cursor, req: ClaimRequest) -> Claim:
    cur.execute(
        "SELECT validator, locked, ip_address FROM servers WHERE server_id = %s FOR NO KEY UPDATE",
        (req.server_id,),
    )
    server = cur.fetchone()
    if server is None:
        raise ClaimRefused("server_missing", req.server_id)
    validator, locked, host = server
    if locked:
        raise ClaimRefused("server_locked", req.server_id)
    cur.execute(
        "SELECT validator, version, gpu_count, supported_gpus, ban_reason FROM chutes"
        " WHERE chute_id = %s FOR SHARE",
        (req.chute_id,),
    )
    chute = cur.fetchone()
    if chute is None:
        raise ClaimRefused("chute_missing", req.chute_id)
    chute_validator, version, gpu_count, supported, ban_reason = chute
    if ban_reason:
        raise ClaimRefused("chute_banned", req.chute_id)
    if chute_validator != validator:
        raise ClaimRefused("validator_mismatch", f"{req.chute_id} on {req.server_id}")
    ids = None if req.gpu_ids is None else list(req.gpu_ids)
    if ids is not None and (len(set(ids)) != gpu_count or len(ids) != gpu_count):
        raise ClaimRefused("bad_gpu_selection", f"{len(ids)} ids for {gpu_count} GPUs")
    # No conflict target: a retried claim racing its first try meets the first row on either
    # unique key (deployment_id, or migration 0004's (deployment_id, server_id)); with a
    # target naming only one, the other raised UniqueViolation instead of a refusal.
    cur.execute(
        "INSERT INTO deployments (deployment_id, validator, host, chute_id, server_id,"
        " version, stub, job_id) VALUES (%s, %s, %s, %s, %s, %s, true, %s)"
        " ON CONFLICT DO NOTHING",
        (req.deployment_id, validator, host, req.chute_id, req.server_id, version, req.job_id),
    )
    if cur.rowcount != 1:
        raise ClaimRefused("deployment_exists", req.deployment_id)
    cur.execute(
        _CLAIM,
        {
            "dep": req.deployment_id,
            "server": req.server_id,
            "models": list(supported or []),
            "ids": ids,
            "n": gpu_count,
        },
    )
    got = tuple(sorted(row[0] for row in cur.fetchall()))
    if len(got) != gpu_count:
        raise ClaimRefused("not_enough_gpus", f"{len(got)} of {gpu_count} on {req.server_id}")
    return Claim(
        req.deployment_id, req.chute_id, req.server_id, validator, version, req.job_id, got, host
    )


@dataclass(frozen=True)
class Held:
    """A deployment as undeploy sees it."""

    deployment_id: str
    chute_id: str
    server_id: str
    server_name: str
    validator: str
    instance_id: str | None
    job_id: str | None
    gpu_ids: tuple[str, ...]


def mark_terminating(conn: connection, deployment_id: str) -> Held | None:
    """Set `terminating_at` (first call only) and return the deployment; None if it is gone.
    Its GPUs stay claimed until `release`."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE deployments d SET terminating_at = coalesce(d.terminating_at, now())"
            " FROM servers s WHERE d.deployment_id = %s AND s.server_id = d.server_id"
            " RETURNING d.deployment_id, d.chute_id, d.server_id, s.name, d.validator,"
            " d.instance_id, d.job_id",
            (deployment_id,),
        )
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute(
            "SELECT gpu_id FROM gpus WHERE deployment_id = %s ORDER BY gpu_id", (deployment_id,)
        )
        gpus = tuple(r[0] for r in cur.fetchall())
    dep, chute, server, name, validator, instance, job = row
    return Held(dep, chute, server, name, validator, instance, job, gpus)


def release(conn: connection, deployment_id: str) -> bool:
    """Free the deployment's GPUs and delete its row; call only once its pods are gone.
    False when there was no such deployment (a second release is a no-op)."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE gpus SET deployment_id = NULL WHERE deployment_id = %s", (deployment_id,)
        )
        cur.execute("DELETE FROM deployments WHERE deployment_id = %s", (deployment_id,))
        return bool(cur.rowcount)


@dataclass(frozen=True)
class Violation:
    deployment_id: str
    chute_id: str
    server_id: str
    held: int
    expected: int
    created_at: str


def violations(conn: connection) -> list[Violation]:
    """Deployments (not terminating) that do not hold exactly their chute's `gpu_count`
    GPUs: reconcile alerts and undoes them, newest first."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT d.deployment_id, d.chute_id, d.server_id, count(g.gpu_id)::int,"
            " c.gpu_count, d.created_at::text"
            " FROM deployments d JOIN chutes c ON c.chute_id = d.chute_id"
            " LEFT JOIN gpus g ON g.deployment_id = d.deployment_id"
            " WHERE d.terminating_at IS NULL"
            " GROUP BY d.deployment_id, c.gpu_count"
            " HAVING count(g.gpu_id) <> c.gpu_count"
            " ORDER BY d.created_at DESC"
        )
        return [Violation(*row) for row in cur.fetchall()]
