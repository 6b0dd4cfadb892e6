"""Migrations: fresh up/down, upstream-shaped schema in place, defaults, triggers, RESTRICT,
concurrent starters under the advisory lock. GPU claims: tests/test_claims.py."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg2
import pytest
from control_api.db.migrate import migrate, rollback

ALL = [
    "0001_schema",
    "0002_audit_trail",
    "0003_inventory_version",
    "0004_gpu_claims",
    "0005_inventory_changes",
]

UPSTREAM_SCHEMA = """
CREATE TABLE chutes (chute_id varchar PRIMARY KEY, validator varchar, name varchar,
  image varchar, code varchar, filename varchar, ref_str varchar, version varchar,
  supported_gpus jsonb, gpu_count integer, chutes_version varchar, ban_reason varchar,
  created_at timestamp with time zone DEFAULT now(), updated_at timestamp with time zone);
CREATE TABLE servers (server_id varchar PRIMARY KEY, validator varchar, name varchar UNIQUE,
  ip_address varchar, verification_port integer, status varchar,
  created_at timestamp with time zone DEFAULT now(), labels jsonb, seed bigint,
  gpu_count integer, cpu_per_gpu integer, memory_per_gpu integer, hourly_cost float,
  locked boolean);
CREATE TABLE deployments (deployment_id varchar PRIMARY KEY, instance_id varchar,
  validator varchar, host varchar, port integer,
  chute_id varchar REFERENCES chutes ON DELETE CASCADE,
  server_id varchar REFERENCES servers ON DELETE CASCADE, version varchar, active boolean,
  verified_at timestamp with time zone, stub boolean, job_id varchar, config_id varchar,
  created_at timestamp with time zone DEFAULT now());
CREATE TABLE gpus (gpu_id varchar PRIMARY KEY, validator varchar,
  server_id varchar REFERENCES servers ON DELETE CASCADE,
  deployment_id varchar REFERENCES deployments ON DELETE SET NULL, device_info jsonb,
  model_short_ref varchar, verified boolean);
CREATE TABLE deployment_audit (deployment_id varchar PRIMARY KEY, validator varchar,
  instance_id varchar, chute_id varchar, version varchar, created_at timestamp,
  verified_at timestamp, deleted_at timestamp);
CREATE FUNCTION old_trail() RETURNS trigger AS $$ BEGIN
  INSERT INTO deployment_audit (deployment_id, validator, chute_id, version, created_at)
  VALUES (NEW.deployment_id, NEW.validator, NEW.chute_id, NEW.version, now());
  RETURN NEW; END; $$ LANGUAGE plpgsql;
CREATE TRIGGER tr_deployment_created AFTER INSERT ON deployments
  FOR EACH ROW EXECUTE FUNCTION old_trail();
INSERT INTO chutes VALUES ('c1', 'v', 'llama', 'img', 'code', 'f.py', 'a:b', '1',
  '["h100", "h200"]', 1, '0.3.0', NULL, now(), now());
INSERT INTO servers (server_id, validator, name, gpu_count, hourly_cost)
  VALUES ('s1', 'v', 'node', 1, 1.0);
INSERT INTO deployments (deployment_id, validator, chute_id, server_id, version)
  VALUES ('d1', 'v', 'c1', 's1', '1');
UPDATE deployment_audit SET created_at = '2025-01-01 00:00:00';
"""


def _conn(dsn: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(dsn, options="-c TimeZone=UTC")
    conn.autocommit = True
    return conn


def test_upstream_schema_migrates_in_place(fresh_db: Callable[[], str]) -> None:
    dsn = fresh_db()
    conn = _conn(dsn)
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'Asia/Shanghai'")
        cur.execute(UPSTREAM_SCHEMA)
    assert migrate(dsn) == ALL
    assert migrate(dsn) == []
    with conn.cursor() as cur:
        cur.execute("SELECT locked, cpu_per_gpu, status FROM servers")
        assert cur.fetchone() == (False, 1, "Bootstrapping")
        cur.execute("SELECT supported_gpus FROM chutes")
        assert cur.fetchone() == (["h100", "h200"],)
        cur.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'deployment_audit' AND column_name = 'created_at'"
        )
        assert cur.fetchone() == ("timestamp with time zone",)
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute("SELECT created_at::text FROM deployment_audit")
        assert cur.fetchone() == ("2025-01-01 00:00:00+00",)
        # old trigger replaced: one audit row per insert
        cur.execute(
            "INSERT INTO deployments (deployment_id, validator, chute_id, server_id,"
            " version) VALUES ('d2', 'v', 'c1', 's1', '1')"
        )
        cur.execute("SELECT count(*) FROM deployment_audit WHERE deployment_id = 'd2'")
        assert cur.fetchone() == (1,)
        with pytest.raises(psycopg2.errors.ForeignKeyViolation):
            cur.execute("DELETE FROM servers WHERE server_id = 's1'")
    conn.close()


def test_fresh_defaults_triggers_and_down(fresh_db: Callable[[], str]) -> None:
    dsn = fresh_db()
    migrate(dsn)
    conn = _conn(dsn)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO chutes (chute_id, validator, image, code, filename, ref_str,"
            " version, gpu_count) VALUES ('c', 'v', 'i', 'x', 'f', 'r', '1', 1)"
        )
        cur.execute(
            "INSERT INTO servers (server_id, validator, name, gpu_count, hourly_cost)"
            " VALUES ('s', 'v', 'n', 1, 1)"
        )
        cur.execute(
            "INSERT INTO deployments (deployment_id, validator, chute_id, server_id,"
            " version) VALUES ('d', 'v', 'c', 's', '1')"
        )
        cur.execute("UPDATE deployments SET verified_at = now(), instance_id = 'i1'")
        cur.execute("DELETE FROM deployments")
        cur.execute(
            "SELECT instance_id, verified_at IS NOT NULL, deleted_at IS NOT NULL"
            " FROM deployment_audit"
        )
        assert cur.fetchone() == ("i1", True, True)
        cur.execute("SELECT locked, status, created_at IS NOT NULL FROM servers")
        assert cur.fetchone() == (False, "Bootstrapping", True)
    conn.close()
    assert rollback(dsn, steps=len(ALL)) == ALL[::-1]
    assert migrate(dsn) == ALL


def test_concurrent_starters_apply_once(fresh_db: Callable[[], str]) -> None:
    dsn = fresh_db()
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(migrate(dsn))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(len(r) for r in results) == [0, 0, 0, len(ALL)]
