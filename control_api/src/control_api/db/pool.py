"""psycopg2 connection pool; the caller's `with` block owns the transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg2.extensions import connection
from psycopg2.pool import ThreadedConnectionPool


class Database:
    def __init__(self, dsn: str, maxconn: int = 16) -> None:
        self._pool = ThreadedConnectionPool(
            1, maxconn, dsn, options="-c TimeZone=UTC", application_name="control_api"
        )

    @contextmanager
    def connection(self) -> Iterator[connection]:
        """Commit on success, roll back on error, always return the connection."""
        conn = self._pool.getconn()
        broken = False
        try:
            with conn:
                yield conn
        except Exception:
            broken = bool(conn.closed)
            raise
        finally:
            self._pool.putconn(conn, close=broken or bool(conn.closed))

    def close(self) -> None:
        self._pool.closeall()
