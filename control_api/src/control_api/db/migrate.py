"""Ordered SQL migrations under a PostgreSQL advisory lock (whoever starts first applies).

The SQL files are package data (`control_api/migrations/`), found through `importlib.resources`,
so an installed wheel migrates exactly like the source tree.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg2

from control_api.db.pool import connect_unbounded

log = logging.getLogger(__name__)
LOCK_KEY = 0x63687574  # "chut"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    up: Traversable
    down: Traversable | None


def default_dir() -> Traversable:
    """The packaged migrations; `CONTROL_API_MIGRATIONS` points elsewhere (tests, hotfixes)."""
    env = os.environ.get("CONTROL_API_MIGRATIONS")
    if env:
        return Path(env)
    return files("control_api") / "migrations"


def discover(directory: Traversable) -> list[Migration]:
    ups: dict[str, Traversable] = {}
    downs: dict[str, Traversable] = {}
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if not match:
            continue
        version = f"{match.group(1)}_{match.group(2)}"
        (ups if match.group(3) == "up" else downs)[version] = path
    return [Migration(v, ups[v], downs.get(v)) for v in sorted(ups)]


def _applied(cur: psycopg2.extensions.cursor) -> set[str]:
    cur.execute(
        "CREATE TABLE IF NOT EXISTS control_api_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur.execute("SELECT version FROM control_api_migrations")
    return {row[0] for row in cur.fetchall()}


def migrate(dsn: str, directory: Traversable | None = None, target: str | None = None) -> list[str]:
    """Apply pending migrations up to `target` (all if None); return the versions applied."""
    migrations = discover(directory or default_dir())
    conn = connect_unbounded(dsn, "control_api.migrate")
    done: list[str] = []
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.autocommit = False
            with conn, conn.cursor() as cur:
                applied = _applied(cur)
            for mig in migrations:
                if target is not None and mig.version > target:
                    break
                if mig.version in applied:
                    continue
                with conn, conn.cursor() as cur:
                    cur.execute(mig.up.read_text())
                    cur.execute(
                        "INSERT INTO control_api_migrations (version) VALUES (%s)", (mig.version,)
                    )
                log.info("db.migrated", extra={"version": mig.version})
                done.append(mig.version)
        finally:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    finally:
        conn.close()
    return done


def rollback(dsn: str, directory: Traversable | None = None, steps: int = 1) -> list[str]:
    """Revert the newest `steps` migrations with their down files."""
    migrations = {m.version: m for m in discover(directory or default_dir())}
    conn = connect_unbounded(dsn, "control_api.rollback")
    undone: list[str] = []
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            applied = sorted(_applied(cur), reverse=True)[:steps]
            for version in applied:
                down = migrations[version].down
                if down is None:
                    raise RuntimeError(f"migration {version} has no down file")
                cur.execute(down.read_text())
                cur.execute("DELETE FROM control_api_migrations WHERE version = %s", (version,))
                undone.append(version)
    finally:
        conn.close()
    return undone
