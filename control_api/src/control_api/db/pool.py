"""psycopg2 connection pool; the caller's `with` block owns the transaction.

psycopg2's pool raises `PoolError` as soon as `maxconn` connections are out; here a caller waits
(bounded) for a free one instead, so a burst larger than the pool queues rather than failing.
Losing PostgreSQL, or waiting too long, raises `DatabaseUnavailable` (the API answers 503).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from psycopg2.extensions import connection
from psycopg2.pool import ThreadedConnectionPool


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached, or no pooled connection became free in time."""


class Database:
    def __init__(self, dsn: str, maxconn: int = 16, acquire_timeout_s: float = 10.0) -> None:
        self._pool = ThreadedConnectionPool(
            1, maxconn, dsn, options="-c TimeZone=UTC", application_name="control_api"
        )
        self._slots = threading.BoundedSemaphore(maxconn)
        self._acquire_timeout_s = acquire_timeout_s

    @contextmanager
    def connection(self) -> Iterator[connection]:
        """Commit on success, roll back on error, always return the connection."""
        if not self._slots.acquire(timeout=self._acquire_timeout_s):
            raise DatabaseUnavailable("no free database connection")
        try:
            try:
                conn = self._pool.getconn()
            except psycopg2.OperationalError as exc:
                raise DatabaseUnavailable("cannot connect") from exc
            broken = False
            try:
                with conn:
                    yield conn
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                broken = True
                if conn.closed:  # the server went away mid-request
                    raise DatabaseUnavailable("connection lost") from exc
                raise
            except Exception:
                broken = bool(conn.closed)
                raise
            finally:
                self._pool.putconn(conn, close=broken or bool(conn.closed))
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.closeall()
