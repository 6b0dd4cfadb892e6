"""GPU claims (control_api/db/claims.py, migration 0004) against the real PostgreSQL: racing
claimers never double-book a GPU, refusals change nothing, the schema rejects what the claim
code would never do, and the API's lock route fences claims."""

from __future__ import annotations

import random
import threading
from collections import Counter

import psycopg2
import psycopg2.errors
import pytest
from control_api.db import claims
from control_api.db.claims import ClaimRefused, ClaimRequest
from control_api.db.pool import Database

from tests.conftest import Api
from tests.seed import add_chute, add_server


def _claim(db: psycopg2.extensions.connection, req: ClaimRequest) -> claims.Claim:
    db.autocommit = False
    try:
        with db:
            return claims.claim(db, req)
    finally:
        db.autocommit = True


def _rows(db: psycopg2.extensions.connection, sql: str) -> list[tuple[object, ...]]:
    with db.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_claim_takes_exactly_gpu_count_free_verified_supported(
    db: psycopg2.extensions.connection,
) -> None:
    add_chute(db, "c", gpu_count=2, supported=("h200",))
    add_server(db, "s", gpus=4)
    got = _claim(db, ClaimRequest("c", "s", deployment_id="d1"))
    assert len(got.gpu_ids) == 2 and got.validator == "5validator" and got.host == "203.0.113.10"
    assert _rows(db, "SELECT stub, server_id FROM deployments") == [(True, "s")]
    second = _claim(db, ClaimRequest("c", "s", deployment_id="d2"))
    assert not set(got.gpu_ids) & set(second.gpu_ids)
    with pytest.raises(ClaimRefused) as refused:
        _claim(db, ClaimRequest("c", "s", deployment_id="d3"))
    assert refused.value.reason == "not_enough_gpus"
    # the refused claim left no row behind (its savepoint was rolled back)
    assert _rows(db, "SELECT deployment_id FROM deployments ORDER BY 1") == [("d1",), ("d2",)]
    assert claims.violations(db) == []


@pytest.mark.parametrize(
    ("setup", "reason", "detail"),
    [
        ({"locked": True}, "server_locked", "s"),
        ({"ban_reason": "abuse"}, "chute_banned", "c"),
        ({"verified": False}, "not_enough_gpus", "0 of 1 on s"),
        ({"model": "h100"}, "not_enough_gpus", "0 of 1 on s"),
        ({"server_validator": "5other"}, "validator_mismatch", "c on s"),
        ({"chute": "gone"}, "chute_missing", "gone"),
        ({"server": "gone"}, "server_missing", "gone"),
    ],
)
def test_refusals_change_nothing(
    db: psycopg2.extensions.connection, setup: dict[str, object], reason: str, detail: str
) -> None:
    add_chute(db, "c", gpu_count=1, ban_reason=setup.get("ban_reason"))  # type: ignore[arg-type]
    add_server(
        db,
        "s",
        gpus=2,
        locked=bool(setup.get("locked")),
        verified=bool(setup.get("verified", True)),
        model=str(setup.get("model", "h200")),
        validator=str(setup.get("server_validator", "5validator")),
    )
    req = ClaimRequest(str(setup.get("chute", "c")), str(setup.get("server", "s")))
    with pytest.raises(ClaimRefused) as refused:
        _claim(db, req)
    assert (refused.value.reason, refused.value.detail) == (reason, detail)
    assert str(refused.value) == f"{reason}: {detail}"
    assert _rows(db, "SELECT count(*) FROM deployments") == [(0,)]
    assert _rows(db, "SELECT count(*) FROM gpus WHERE deployment_id IS NOT NULL") == [(0,)]


def test_claim_describes_the_new_deployment(db: psycopg2.extensions.connection) -> None:
    add_chute(db, "c", gpu_count=2, version="v7")
    ids = add_server(db, "s", gpus=3, ip="198.51.100.7")
    got = _claim(db, ClaimRequest("c", "s", job_id="j1", deployment_id="d1"))
    assert got == claims.Claim(
        deployment_id="d1",
        chute_id="c",
        server_id="s",
        validator="5validator",
        version="v7",
        job_id="j1",
        gpu_ids=tuple(sorted(ids)[:2]),
        host="198.51.100.7",
    )
    assert _rows(
        db, "SELECT deployment_id, chute_id, server_id, version, job_id, host FROM deployments"
    ) == [("d1", "c", "s", "v7", "j1", "198.51.100.7")]


def test_refused_message_and_detail() -> None:
    bare = ClaimRefused("server_missing")
    assert (bare.reason, bare.detail, str(bare)) == ("server_missing", "", "server_missing")
    full = ClaimRefused("server_locked", "s1")
    assert (full.reason, full.detail, str(full)) == ("server_locked", "s1", "server_locked: s1")


@pytest.mark.parametrize(
    ("pick", "detail"),
    [((0,), "1 ids for 2 GPUs"), ((0, 0), "2 ids for 2 GPUs"), ((0, 0, 1), "3 ids for 2 GPUs")],
)
def test_gpu_selection_must_name_gpu_count_distinct_gpus(
    db: psycopg2.extensions.connection, pick: tuple[int, ...], detail: str
) -> None:
    """Too few ids, a repeated id, or a repeat that pads the count: refused before any write
    (a repeat hidden among enough distinct ids would otherwise claim GPUs nobody named)."""
    add_chute(db, "c", gpu_count=2)
    ids = add_server(db, "s", gpus=4)
    with pytest.raises(ClaimRefused) as refused:
        _claim(db, ClaimRequest("c", "s", gpu_ids=tuple(ids[i] for i in pick)))
    assert (refused.value.reason, refused.value.detail) == ("bad_gpu_selection", detail)
    assert _rows(db, "SELECT count(*) FROM deployments") == [(0,)]
    assert _rows(db, "SELECT count(*) FROM gpus WHERE deployment_id IS NOT NULL") == [(0,)]


def test_same_deployment_id_is_claimed_once(
    database_dsn: str, db: psycopg2.extensions.connection
) -> None:
    """A retried claim (same deployment id), even from 8 connections at the same moment, wins
    once: the others are refused `deployment_exists` and take no GPUs."""
    add_chute(db, "c", gpu_count=2)
    add_server(db, "s", gpus=16)
    pool = Database(database_dsn, maxconn=8)
    barrier = threading.Barrier(8)
    won: list[claims.Claim] = []
    lost: list[ClaimRefused] = []

    def run() -> None:
        try:
            with pool.connection() as conn:
                barrier.wait(30)
                won.append(claims.claim(conn, ClaimRequest("c", "s", deployment_id="d1")))
        except ClaimRefused as exc:
            lost.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    pool.close()
    assert len(won) == 1 and len(lost) == 7
    assert {(e.reason, e.detail, str(e)) for e in lost} == {
        ("deployment_exists", "d1", "deployment_exists: d1")
    }
    assert _rows(
        db, "SELECT deployment_id, count(*) FROM gpus WHERE deployment_id IS NOT NULL GROUP BY 1"
    ) == [("d1", 2)]
    assert _rows(db, "SELECT count(*) FROM deployments") == [(1,)]


def test_exact_gpu_selection(db: psycopg2.extensions.connection) -> None:
    add_chute(db, "c", gpu_count=2)
    ids = add_server(db, "s", gpus=4)
    got = _claim(db, ClaimRequest("c", "s", gpu_ids=(ids[3], ids[1])))
    assert got.gpu_ids == tuple(sorted((ids[1], ids[3])))
    with pytest.raises(ClaimRefused) as refused:
        _claim(db, ClaimRequest("c", "s", gpu_ids=(ids[1], ids[2])))  # ids[1] is taken
    assert refused.value.reason == "not_enough_gpus"
    with pytest.raises(ClaimRefused) as wrong:
        _claim(db, ClaimRequest("c", "s", gpu_ids=(ids[0],)))
    assert wrong.value.reason == "bad_gpu_selection"


def test_schema_rejects_double_booking_by_any_query(db: psycopg2.extensions.connection) -> None:
    """Migration 0004: whatever SQL a future change writes, a claimed GPU cannot move to
    another deployment, an unverified GPU cannot be claimed, a GPU and its deployment share a
    server."""
    add_chute(db, "c", gpu_count=1)
    ids = add_server(db, "s", gpus=2)
    other = add_server(db, "t", gpus=1, verified=False)
    first = _claim(db, ClaimRequest("c", "s", deployment_id="d1"))
    _claim(db, ClaimRequest("c", "s", deployment_id="d2"))
    with db.cursor() as cur:
        with pytest.raises(psycopg2.errors.ExclusionViolation):
            cur.execute("UPDATE gpus SET deployment_id = 'd2' WHERE gpu_id = %s", first.gpu_ids)
        with pytest.raises(psycopg2.errors.CheckViolation):
            cur.execute("UPDATE gpus SET deployment_id = 'd1' WHERE gpu_id = %s", (other[0],))
        cur.execute("UPDATE gpus SET verified = true WHERE gpu_id = %s", (other[0],))
        with pytest.raises(psycopg2.errors.ForeignKeyViolation):  # d1 is on server s
            cur.execute("UPDATE gpus SET deployment_id = 'd1' WHERE gpu_id = %s", (other[0],))
        # releasing and deleting directly still works (the single-column key sets NULL)
        cur.execute("DELETE FROM deployments WHERE deployment_id = 'd2'")
    assert _rows(db, "SELECT count(*) FROM gpus WHERE deployment_id IS NOT NULL") == [(1,)]
    assert ids


def test_release_then_reclaim_and_terminating(db: psycopg2.extensions.connection) -> None:
    add_chute(db, "c", gpu_count=2)
    add_server(db, "s", gpus=2)
    got = _claim(db, ClaimRequest("c", "s", job_id="j1"))
    held = claims.mark_terminating(db, got.deployment_id)
    assert held is not None and held.gpu_ids == got.gpu_ids and held.job_id == "j1"
    assert _rows(db, "SELECT terminating_at IS NOT NULL FROM deployments") == [(True,)]
    assert claims.violations(db) == []  # terminating rows are not checked
    assert claims.release(db, got.deployment_id) is True
    assert claims.release(db, got.deployment_id) is False
    assert claims.mark_terminating(db, got.deployment_id) is None
    again = _claim(db, ClaimRequest("c", "s"))
    assert again.gpu_ids == got.gpu_ids


def test_mark_terminating_reports_the_deployment(db: psycopg2.extensions.connection) -> None:
    add_chute(db, "c", gpu_count=2)
    add_server(db, "s", gpus=3, name="node-a")
    got = _claim(db, ClaimRequest("c", "s", job_id="j1", deployment_id="d1"))
    with db.cursor() as cur:
        cur.execute("UPDATE deployments SET instance_id = 'i1'")
    held = claims.mark_terminating(db, "d1")
    assert held == claims.Held(
        deployment_id="d1",
        chute_id="c",
        server_id="s",
        server_name="node-a",
        validator="5validator",
        instance_id="i1",
        job_id="j1",
        gpu_ids=got.gpu_ids,
    )
    [(first,)] = _rows(db, "SELECT terminating_at FROM deployments")
    assert claims.mark_terminating(db, "d1") == held
    assert _rows(db, "SELECT terminating_at FROM deployments") == [(first,)]  # first call only


def test_violations_report_short_deployments(db: psycopg2.extensions.connection) -> None:
    add_chute(db, "c", gpu_count=2)
    add_server(db, "s", gpus=2)
    got = _claim(db, ClaimRequest("c", "s"))
    with db.cursor() as cur:
        cur.execute("UPDATE gpus SET deployment_id = NULL WHERE gpu_id = %s", (got.gpu_ids[0],))
    [v] = claims.violations(db)
    assert (v.deployment_id, v.held, v.expected) == (got.deployment_id, 1, 2)


def test_many_racing_claimers_never_double_book(
    database_dsn: str, db: psycopg2.extensions.connection
) -> None:
    """48 threads on their own connections claim 1, 2, 4 or 8 GPUs, all released by one
    barrier, over 3 servers x 8 GPUs (some claims name exact GPUs): every committed deployment
    holds exactly its chute's gpu_count GPUs, no GPU is held twice, and at least as many
    claims win as one server's worth."""
    sizes = {1: "c1", 2: "c2", 4: "c4", 8: "c8"}
    for n, chute in sizes.items():
        add_chute(db, chute, gpu_count=n)
    servers = {s: add_server(db, s, gpus=8) for s in ("s1", "s2", "s3")}
    pool = Database(database_dsn, maxconn=48)
    rng = random.Random(7)
    plans = []
    for i in range(48):
        n = rng.choice(list(sizes))
        server = rng.choice(list(servers))
        exact = tuple(rng.sample(servers[server], n)) if i % 3 == 0 else None
        plans.append(ClaimRequest(sizes[n], server, gpu_ids=exact, deployment_id=f"d{i:02d}"))
    barrier = threading.Barrier(len(plans))
    won: list[claims.Claim] = []
    refused: Counter[str] = Counter()
    errors: list[BaseException] = []

    def run(req: ClaimRequest) -> None:
        try:
            with pool.connection() as conn:
                barrier.wait(30)
                won.append(claims.claim(conn, req))
        except ClaimRefused as exc:
            refused[exc.reason] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    pool.close()
    assert not errors, errors
    assert set(refused) <= {"not_enough_gpus"}
    assert len(won) + sum(refused.values()) == len(plans)
    held = Counter(g for c in won for g in c.gpu_ids)
    assert held and max(held.values()) == 1
    assert sum(len(c.gpu_ids) for c in won) <= 24
    rows = _rows(
        db, "SELECT deployment_id, count(*) FROM gpus WHERE deployment_id IS NOT NULL GROUP BY 1"
    )
    assert {str(r[0]): r[1] for r in rows} == {c.deployment_id: len(c.gpu_ids) for c in won}
    assert _rows(db, "SELECT count(*) FROM deployments")[0][0] == len(won)
    assert claims.violations(db) == []


def test_single_winner_for_the_same_gpus(
    database_dsn: str, db: psycopg2.extensions.connection
) -> None:
    """32 claimers name the same two GPUs at the same moment: exactly one wins."""
    add_chute(db, "c", gpu_count=2)
    ids = add_server(db, "s", gpus=2)
    pool = Database(database_dsn, maxconn=32)
    barrier = threading.Barrier(32)
    won: list[str] = []
    lost: list[str] = []

    def run(i: int) -> None:
        try:
            with pool.connection() as conn:
                barrier.wait(30)
                won.append(
                    claims.claim(conn, ClaimRequest("c", "s", gpu_ids=tuple(ids))).deployment_id
                )
        except ClaimRefused as exc:
            lost.append(exc.reason)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    pool.close()
    assert len(won) == 1 and lost == ["not_enough_gpus"] * 31


def test_lock_route_fences_claims(api: Api, db: psycopg2.extensions.connection) -> None:
    """The API's lock route and claims serialize on the server row: once `chutes-miner lock`
    has its answer, no claim on that server commits any more."""
    add_chute(db, "c", gpu_count=1)
    add_server(db, "s", gpus=512)
    pool = Database(api.settings.postgresql.get_secret_value(), maxconn=8)
    stop = threading.Event()
    outcomes: Counter[str] = Counter()

    def claimer() -> None:
        while not stop.is_set():
            try:
                with pool.connection() as conn:
                    claims.claim(conn, ClaimRequest("c", "s"))
                outcomes["won"] += 1
            except ClaimRefused as exc:
                outcomes[exc.reason] += 1

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        while outcomes["won"] < 5:
            stop.wait(0.01)
        resp = api.get("/servers/s/lock")
        assert resp.status_code == 200 and resp.json()["locked"] is True
        at_lock = _rows(db, "SELECT count(*) FROM deployments")[0][0]
        stop.wait(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        pool.close()
    assert outcomes["server_locked"] > 0
    assert _rows(db, "SELECT count(*) FROM deployments")[0][0] == at_lock
