"""Hung dependencies (issue #16 item 5): PostgreSQL, Redis or a validator that accept
connections and never answer. Each request that needs one is a 503 (502 for the validator)
within the configured bound, /ping keeps answering meanwhile, and the API recovers when the
dependency does."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from bittensor_wallet import Keypair
from control_api.core.signing import d1_headers
from control_api.db.migrate import migrate
from control_api.db.pool import Database, DatabaseUnavailable, DbTimeouts
from control_api.main import create_app

from tests.conftest import PG_ADMIN, REDIS_URL, ApiFactory, LiveServer, SettingsFactory
from tests.faults import FreezableProxy, through
from tests.standins import StandinKube, StandinValidator

PG_HOST, PG_PORT = PG_ADMIN.split("@", 1)[1].split("/", 1)[0].split(":")
REDIS_HOST, REDIS_PORT = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
BOUNDS = {"db_connect_timeout_s": 1.0, "db_statement_timeout_s": 1.0, "db_pool_timeout_s": 1.0}
# what a request may wait for a silent PostgreSQL with BOUNDS: one round trip's deadline
# (statement + 1 s); the margin is for this 2-core machine under load
DB_BOUND_S = BOUNDS["db_statement_timeout_s"] + 1.0
MARGIN_S = 2.0


@contextmanager
def _api(make_settings: SettingsFactory, **overrides: object) -> Iterator[httpx.Client]:
    settings = make_settings(**overrides)
    app = create_app(settings, kube=StandinKube(devices_url="http://127.0.0.1:1"))
    with LiveServer(app, settings) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        yield http


def _timed(call: Callable[[], httpx.Response]) -> tuple[int, float]:
    start = time.monotonic()
    status = call().status_code
    return status, time.monotonic() - start


def test_silent_postgresql_is_503_within_the_bound(
    fresh_db: Callable[[], str], make_settings: SettingsFactory, miner_key: Keypair
) -> None:
    dsn = fresh_db()
    migrate(dsn)
    with FreezableProxy(PG_HOST, int(PG_PORT)) as proxy:
        dsn_via = through(dsn, proxy.port)
        with _api(make_settings, postgresql=dsn_via, **BOUNDS) as http:

            def servers() -> httpx.Response:
                return http.get("/servers/", headers=d1_headers(miner_key, "management"))

            assert servers().status_code == 200  # a pooled connection now exists
            proxy.freeze()
            with ThreadPoolExecutor(48) as pool:  # more than the API's thread pool (40)
                slow = [pool.submit(_timed, servers) for _ in range(60)]
                time.sleep(0.3)
                pings = [_timed(lambda: http.get("/ping")) for _ in range(5)]
                answers = [f.result() for f in slow]
            assert {status for status, _ in answers} == {503}
            assert max(t for _, t in answers) < DB_BOUND_S + MARGIN_S, answers
            assert all(status == 200 and t < 1.0 for status, t in pings), pings
            resp = servers()
            assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
            proxy.thaw()
            deadline = time.monotonic() + 10
            while servers().status_code != 200:
                assert time.monotonic() < deadline, "no recovery"
                time.sleep(0.3)


def test_pool_connect_to_a_silent_server_is_bounded(fresh_db: Callable[[], str]) -> None:
    """Opening a connection (the startup handshake) is bounded too, and after a timeout the
    next caller fails at once instead of waiting out its own deadline."""
    dsn = fresh_db()
    with FreezableProxy(PG_HOST, int(PG_PORT)) as proxy:
        timeouts = DbTimeouts(connect_s=0.5, statement_s=0.5, pool_wait_s=0.5, retry_after_s=2)
        db = Database(through(dsn, proxy.port), 4, timeouts)
        try:
            with db.connection() as conn, conn.cursor() as cur:  # the pool's first connection
                cur.execute("SELECT 1")
            proxy.freeze()
            start = time.monotonic()
            with pytest.raises(DatabaseUnavailable), db.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")  # a round trip on the pooled connection
            assert time.monotonic() - start < 1.0 + MARGIN_S
            start = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="recently"), db.connection():
                pass
            assert time.monotonic() - start < 0.1
            time.sleep(2.1)
            start = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="connect"), db.connection():
                pass  # a new connection: the startup handshake gets no answer
            assert time.monotonic() - start < 0.5 + MARGIN_S
        finally:
            proxy.thaw()
            db.close()


def test_server_side_statement_timeout(database_dsn: str) -> None:
    db = Database(database_dsn, 2, DbTimeouts(statement_s=0.3))
    try:
        with pytest.raises(Exception, match="statement timeout"):  # noqa: PT011 - psycopg2's
            with db.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(5)")
        with db.connection() as conn, conn.cursor() as cur:  # the connection survived
            cur.execute("SELECT 1")
    finally:
        db.close()


def test_silent_redis_is_503_within_the_bound(
    make_settings: SettingsFactory, miner_key: Keypair, db: object
) -> None:
    with FreezableProxy(REDIS_HOST, int(REDIS_PORT)) as proxy:
        redis_via = through(REDIS_URL, proxy.port)
        with _api(make_settings, redis_url=redis_via, redis_timeout_s=0.5) as http:

            def servers() -> httpx.Response:
                return http.get("/servers/", headers=d1_headers(miner_key, "management"))

            assert servers().status_code == 200
            proxy.freeze()
            for call in (
                servers,
                lambda: http.delete("/deployments/purge", headers=_signed(miner_key)),
            ):
                status, took = _timed(call)
                assert status == 503 and took < 0.5 + MARGIN_S, (status, took)
            proxy.thaw()
            deadline = time.monotonic() + 10
            while servers().status_code != 200:
                assert time.monotonic() < deadline, "no recovery"
                time.sleep(0.3)


def _signed(key: Keypair) -> dict[str, str]:
    return d1_headers(key, "management")


def test_silent_validator_is_502_within_the_bound(
    api_with: ApiFactory, validator: StandinValidator
) -> None:
    """add-node asks the validator for its supported GPUs before streaming: a validator that
    accepts the connection and never answers is a 502 after VALIDATOR_TIMEOUT_S."""
    host, port = validator.url.split("//", 1)[1].split(":")
    with FreezableProxy(host, int(port)) as proxy:
        via = f"http://127.0.0.1:{proxy.port}"
        hotkey = validator.hotkey
        supported = {"hotkey": hotkey, "registry": "r", "api": via, "socket": via}
        validators = {"defaultRegistry": "r", "defaultApi": via, "supported": [supported]}
        with api_with(validators=json.dumps(validators), validator_timeout_s=0.5) as api:
            api.kube.add_node("gpu-0", "uid-0")
            proxy.freeze()
            raw = json.dumps(
                {"name": "gpu-0", "validator": hotkey, "hourly_cost": 1.0, "gpu_short_ref": "h200"}
            ).encode()
            status, took = _timed(
                lambda: api.http.post("/servers/", content=raw, headers=api.headers(body=raw))
            )
            assert status == 502 and took < 0.5 + MARGIN_S, (status, took)
            assert api.kube.created == []
