"""The connection pool against the real PostgreSQL: a burst larger than the pool waits for a
free connection (psycopg2's own pool fails at once), and PostgreSQL going away is a 503 with
recovery afterwards, never a 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from bittensor_wallet import Keypair
from control_api.core.signing import d1_headers
from control_api.db.migrate import migrate
from control_api.db.pool import Database, DatabaseUnavailable, DbTimeouts
from control_api.main import create_app

from tests.conftest import LiveServer, SettingsFactory, _admin
from tests.standins import StandinKube


def test_burst_larger_than_pool_waits(database_dsn: str) -> None:
    db = Database(database_dsn, maxconn=2, timeouts=DbTimeouts(pool_wait_s=10))
    errors: list[BaseException] = []
    done: list[int] = []

    def work(i: int) -> None:
        try:
            with db.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(0.1)")
            done.append(i)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    db.close()
    assert errors == []
    assert sorted(done) == list(range(8))


def test_pool_wait_is_bounded(database_dsn: str) -> None:
    db = Database(database_dsn, maxconn=2, timeouts=DbTimeouts(pool_wait_s=0.3))
    try:
        with db.connection(), db.connection():
            start = time.monotonic()
            with pytest.raises(DatabaseUnavailable), db.connection():
                pass
            assert 0.25 < time.monotonic() - start < 5
        with db.connection() as conn, conn.cursor() as cur:  # slots were given back
            cur.execute("SELECT 1")
    finally:
        db.close()


def test_postgresql_gone_is_503_then_recovers(
    fresh_db: Callable[[], str], make_settings: SettingsFactory, miner_key: Keypair
) -> None:
    dsn = fresh_db()
    migrate(dsn)
    name = dsn.rsplit("/", 1)[1]
    app = create_app(
        make_settings(postgresql=dsn), kube=StandinKube(devices_url="http://127.0.0.1:1")
    )
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as http:

        def get_servers() -> httpx.Response:
            return http.get("/servers/", headers=d1_headers(miner_key, "management"))

        assert get_servers().status_code == 200
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            _admin(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            for _ in range(3):  # the pooled connection is dead, then new ones are refused
                resp = get_servers()
                assert resp.status_code == 503, resp.text
                assert resp.json() == {"detail": "database unavailable"}
        finally:
            _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert get_servers().status_code == 200
