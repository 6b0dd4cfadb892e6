"""psycopg2 connection pool; the caller's `with` block owns the transaction.

psycopg2's pool raises `PoolError` as soon as `maxconn` connections are out; here a caller waits
(bounded) for a free one instead, so a burst larger than the pool queues rather than failing.
Losing PostgreSQL, or waiting too long, raises `DatabaseUnavailable` (the API answers 503).

Every wait on the server is bounded, also when the server is alive at the TCP level but does
not answer (frozen, overloaded, a stuck proxy), which no socket option detects: a psycopg2 wait
callback does the I/O waits with a deadline (`DbTimeouts.connect_s` to open a connection,
`statement_s + 1` for each round trip); past it psycopg2 closes the connection and the caller
gets `DatabaseUnavailable`. The server's own `statement_timeout` ends a slow statement first,
TCP keepalives and `tcp_user_timeout` drop a connection whose peer vanished. After a timeout,
requests fail at once for `retry_after_s` instead of each waiting out its own deadline.
"""

from __future__ import annotations

import math
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2.extensions import connection


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached, or no pooled connection became free in time."""


class DatabaseTimeout(psycopg2.OperationalError):
    """PostgreSQL did not answer within the deadline (psycopg2 has closed the connection)."""


@dataclass(frozen=True)
class DbTimeouts:
    connect_s: float = 3.0
    statement_s: float = 5.0
    pool_wait_s: float = 5.0
    retry_after_s: float = 2.0

    def connect_kwargs(self) -> dict[str, Any]:
        """libpq parameters: server-side statement timeout, keepalives, unacknowledged-data
        timeout (libpq's own connect_timeout is not used by the non-blocking connect)."""
        return {
            "options": f"-c TimeZone=UTC -c statement_timeout={int(self.statement_s * 1000)}",
            "connect_timeout": max(2, math.ceil(self.connect_s)),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
            "tcp_user_timeout": int((self.statement_s + 1) * 1000),
        }


class TimedConnection(psycopg2.extensions.connection):
    """A connection whose waits are bounded: `wait_s` (None = unbounded) for each round trip;
    `connect_wait_s` while it connects."""

    connect_wait_s: float | None = None
    wait_s: float | None = None
    connected = False


def _wait(conn: Any) -> None:
    """psycopg2 wait callback: poll the connection, waiting at most its deadline in total."""
    if isinstance(conn, TimedConnection):
        limit = conn.wait_s if conn.connected else conn.connect_wait_s
    else:
        limit = None
    deadline = None if limit is None else time.monotonic() + limit
    poller = select.poll()
    fd = -1
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_READ:
            events = select.POLLIN
        elif state == psycopg2.extensions.POLL_WRITE:
            events = select.POLLOUT
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        if fd != conn.fileno():  # the descriptor can change while libpq connects
            if fd >= 0:
                poller.unregister(fd)
            fd = conn.fileno()
        poller.register(fd, events | select.POLLERR | select.POLLHUP)
        if deadline is None:
            poller.poll()
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
            raise DatabaseTimeout("PostgreSQL did not answer in time")


def install_wait_callback() -> None:
    """Process-wide (psycopg2 has one callback): connections that are not `TimedConnection`
    keep unbounded waits, as without a callback."""
    current = psycopg2.extensions.get_wait_callback()
    if current is None:
        psycopg2.extensions.set_wait_callback(_wait)
    elif current is not _wait:
        raise RuntimeError("another psycopg2 wait callback is installed")


class _UnboundedStatements(TimedConnection):
    connect_wait_s = 10.0


def connect_unbounded(dsn: str, application_name: str) -> connection:
    """One connection for long work (migrations): a bounded connect and keepalives, no
    statement timeout."""
    install_wait_callback()
    conn: connection = psycopg2.connect(
        dsn,
        connection_factory=_UnboundedStatements,
        options="-c TimeZone=UTC",
        application_name=application_name,
        connect_timeout=10,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=3,
        keepalives_count=3,
    )
    conn.connected = True  # type: ignore[attr-defined]
    return conn


class Database:
    """At most `maxconn` connections; idle ones are reused, new ones are opened outside any
    lock (psycopg2's ThreadedConnectionPool connects under its lock, so one silent server
    queued every caller behind each connect attempt)."""

    def __init__(self, dsn: str, maxconn: int = 16, timeouts: DbTimeouts | None = None) -> None:
        install_wait_callback()
        self.timeouts = timeouts or DbTimeouts()
        self._dsn = dsn
        self._factory = type(
            "PoolConnection",
            (TimedConnection,),
            {"connect_wait_s": self.timeouts.connect_s, "wait_s": self.timeouts.statement_s + 1},
        )
        self._idle: list[connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(maxconn)
        self._down_until = 0.0  # after a timeout: fail fast until then ...
        self._probing = False  # ... and then let one caller at a time find out
        self._closed = False
        self._put(self._connect())  # fail at startup, not at the first request

    def _connect(self) -> connection:
        conn: connection = psycopg2.connect(
            self._dsn,
            connection_factory=self._factory,
            application_name="control_api",
            **self.timeouts.connect_kwargs(),
        )
        conn.connected = True  # type: ignore[attr-defined]
        return conn

    def _get(self) -> connection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
        return self._connect()

    def _put(self, conn: connection, broken: bool = False) -> None:
        if broken or conn.closed or self._closed:
            conn.close()
            return
        if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            conn.close()  # the `with conn` block always ends the transaction; be safe
            return
        with self._lock:
            self._idle.append(conn)

    def _admit(self) -> bool | None:
        """None: go ahead; True: go ahead as the one probe of a silent PostgreSQL; False: it
        timed out less than `retry_after_s` ago, or another caller is probing it."""
        if not self._down_until:
            return None
        with self._lock:
            if time.monotonic() < self._down_until or self._probing:
                return False
            self._probing = True
            return True

    def _outcome(self, exc: BaseException | None, probe: bool | None) -> None:
        timed_out = False
        seen = exc
        while seen is not None:
            timed_out = timed_out or isinstance(seen, DatabaseTimeout)
            seen = seen.__context__
        if not (timed_out or probe or self._down_until):
            return  # the usual case: nothing to record
        with self._lock:
            if probe:
                self._probing = False
            if timed_out:
                self._down_until = time.monotonic() + self.timeouts.retry_after_s
            elif exc is None or isinstance(exc, psycopg2.Error):
                self._down_until = 0.0  # it answered

    @contextmanager
    def connection(self) -> Iterator[connection]:
        """Commit on success, roll back on error, always return the connection."""
        probe = self._admit()
        if probe is False:
            raise DatabaseUnavailable("database timed out recently")
        if not self._slots.acquire(timeout=self.timeouts.pool_wait_s):
            if probe:
                with self._lock:
                    self._probing = False
            raise DatabaseUnavailable("no free database connection")
        try:
            if probe is None and time.monotonic() < self._down_until:  # tripped while waiting
                raise DatabaseUnavailable("database timed out recently")
            try:
                conn = self._get()
            except psycopg2.OperationalError as exc:
                self._outcome(exc, probe)
                raise DatabaseUnavailable("cannot connect") from exc
            broken = False
            failure: BaseException | None = None
            try:
                with conn:
                    yield conn
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                broken = True
                failure = exc
                if conn.closed:  # the server went away mid-request, or did not answer
                    raise DatabaseUnavailable("connection lost") from exc
                raise
            except Exception:
                broken = bool(conn.closed)
                raise
            finally:
                self._put(conn, broken)
                self._outcome(failure, probe)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
