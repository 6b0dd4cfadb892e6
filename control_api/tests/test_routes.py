"""Every CLI route against the real database, with DTO shapes checked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg2.extensions
import redis
from control_api.schemas.api import PreflightOut, PurgeOneOut, PurgeOut, ServerOut
from pydantic import TypeAdapter

from tests.conftest import REDIS_URL, Api, Cli


def seed_inventory(
    db: psycopg2.extensions.connection,
    validator: str,
    servers: int = 2,
    gpus: int = 8,
    deployments: int = 4,
    jobs: int = 1,
) -> None:
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO chutes (chute_id, validator, name, image, code, filename, ref_str,"
            " version, supported_gpus, gpu_count) VALUES"
            " ('c1', %s, 'llama', 'u/llama:1', 'print(1)', 'app.py', 'app:chute', 'v1',"
            " ARRAY['h200'], 2)",
            (validator,),
        )
        for s in range(servers):
            sid = f"uid-{s}"
            cur.execute(
                "INSERT INTO servers (server_id, validator, name, ip_address, gpu_count,"
                " hourly_cost) VALUES (%s, %s, %s, '203.0.113.1', %s, 2.5)",
                (sid, validator, f"node-{s}", gpus),
            )
            dep_ids = []
            for d in range(deployments):
                dep = str(uuid.uuid4())
                dep_ids.append(dep)
                cur.execute(
                    "INSERT INTO deployments (deployment_id, validator, host, port, chute_id,"
                    " server_id, version, job_id) VALUES (%s, %s, '203.0.113.1', 30001, 'c1',"
                    " %s, 'v1', %s)",
                    (dep, validator, sid, f"job-{s}-{d}" if d < jobs else None),
                )
            for g in range(gpus):
                cur.execute(
                    "INSERT INTO gpus (gpu_id, validator, server_id, deployment_id, device_info,"
                    " model_short_ref, verified) VALUES (%s, %s, %s, %s, %s, 'h200', true)",
                    (
                        uuid.uuid4().hex,
                        validator,
                        sid,
                        dep_ids[g // 2] if g // 2 < len(dep_ids) else None,
                        json.dumps(
                            {
                                "name": "H200",
                                "memory": 1,
                                "processors": 1,
                                "clock_rate": 1000.0,
                                "uuid": "0" * 32,
                            }
                        ),
                    ),
                )


def test_ping_is_public(api: Api) -> None:
    assert api.http.get("/ping").json() == {"message": "pong"}


def test_list_servers_shape(api: Api, db: psycopg2.extensions.connection) -> None:
    seed_inventory(db, api.validator.hotkey)
    resp = api.get("/servers/")
    assert resp.status_code == 200
    servers = TypeAdapter(list[ServerOut]).validate_python(resp.json())
    assert [s.name for s in servers] == ["node-0", "node-1"]
    server = resp.json()[0]
    datetime.fromisoformat(server["created_at"])
    assert server["created_at"].endswith("+00:00")
    assert server["locked"] is False and server["is_tee"] is False
    assert len(server["gpus"]) == 8 and len(server["deployments"]) == 4
    dep = server["deployments"][0]
    assert dep["chute"]["name"] == "llama" and "code" not in dep["chute"]
    assert len(dep["gpus"]) == 2 and "deployment" not in dep["gpus"][0]


def test_inventory_views_agree(api: Api, db: psycopg2.extensions.connection) -> None:
    """One server, one deployment and the preflight jobs render exactly as in the full list,
    including a deployment whose chute row is gone and a GPU with no deployment."""
    seed_inventory(db, api.validator.hotkey, servers=2, jobs=2)
    with db.cursor() as cur:
        cur.execute("ALTER TABLE deployments DROP CONSTRAINT deployments_chute_id_fkey")
        cur.execute(
            "UPDATE deployments SET chute_id = 'gone' WHERE deployment_id ="
            " (SELECT min(deployment_id) FROM deployments WHERE server_id = 'uid-1')"
        )
        cur.execute(
            "UPDATE gpus SET deployment_id = NULL WHERE gpu_id ="
            " (SELECT min(gpu_id) FROM gpus WHERE server_id = 'uid-1')"
        )
        cur.execute("UPDATE servers SET labels = '{\"zone\": \"a\"}' WHERE server_id = 'uid-1'")
    listed = {s["name"]: s for s in api.get("/servers/").json()}
    server = listed["node-1"]
    assert api.get("/servers/node-1/unlock").json() == server
    assert server["labels"] == {"zone": "a"}
    assert [g["gpu_id"] for g in server["gpus"]] == sorted(g["gpu_id"] for g in server["gpus"])
    assert sum(len(d["gpus"]) for d in server["deployments"]) == 7
    assert [d["chute"] is None for d in server["deployments"]].count(True) == 1
    jobs = api.get("/servers/node-1/delete_preflight").json()["jobs"]
    assert jobs == [d for d in server["deployments"] if d["job_id"] is not None]
    for dep in server["deployments"]:
        purged = api.delete(f"/deployments/{dep['deployment_id']}").json()
        assert purged["deployment_purged"] == dep


def test_lock_unlock_by_name_and_id(api: Api, db: psycopg2.extensions.connection) -> None:
    seed_inventory(db, api.validator.hotkey, servers=1)
    assert api.get("/servers/node-0/lock").json()["locked"] is True
    assert api.get("/servers/uid-0/unlock").json()["locked"] is False
    assert api.get("/servers/nope/lock").status_code == 404


def test_delete_preflight_with_jobs(api: Api, db: psycopg2.extensions.connection) -> None:
    seed_inventory(db, api.validator.hotkey, servers=1, jobs=2)
    resp = api.get("/servers/node-0/delete_preflight")
    assert resp.status_code == 200
    out = PreflightOut.model_validate(resp.json())
    assert len(out.jobs) == 2 and all(j.job_id for j in out.jobs)
    assert api.get("/servers/missing/delete_preflight").status_code == 404


class Published:
    """What the API published for gepetto (§5): the `miner_events` channel and the stream."""

    def __init__(self, api: Api) -> None:
        self._r = redis.Redis.from_url(REDIS_URL)
        self._stream = api.prefix + "miner_events_stream"
        self._sub = self._r.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._sub.subscribe(api.prefix + "miner_events")
        self._sub.get_message(timeout=1)  # the subscribe confirmation

    def take(self) -> list[dict[str, Any]]:
        """Events since the last call; the channel and the stream must agree."""
        channel = []
        while (msg := self._sub.get_message(timeout=0.5)) is not None:
            channel.append(json.loads(msg["data"]))
        entries: Any = self._r.xrange(self._stream)
        self._r.delete(self._stream)
        assert [json.loads(e[1][b"event"]) for e in entries] == channel
        return channel

    def close(self) -> None:
        self._sub.close()
        self._r.close()


def test_delete_server_publishes(api: Api, db: psycopg2.extensions.connection) -> None:
    seed_inventory(db, api.validator.hotkey, servers=1)
    published = Published(api)
    resp = api.delete("/servers/node-0")
    assert resp.status_code == 200 and resp.json()["status"] == "started"
    assert published.take() == [_server_deleted("uid-0")]
    assert api.delete("/servers/node-0x").status_code == 404
    assert published.take() == []
    published.close()
    with db.cursor() as cur:  # the API never deletes: gepetto undeploys first
        cur.execute("SELECT count(*) FROM servers")
        assert cur.fetchone() == (1,)


def _server_deleted(server_id: str) -> dict[str, Any]:
    return {"event_type": "server_deleted", "event_data": {"server_id": server_id}}


def _undeploy(ids: list[str], reason: str) -> dict[str, Any]:
    return {
        "event_type": "undeploy_requested",
        "event_data": {"deployment_ids": ids, "reason": reason},
    }


def test_purges(api: Api, db: psycopg2.extensions.connection) -> None:
    """Purges only publish `undeploy_requested` (§2.2, §5, §9.2); the rows stay for gepetto."""
    seed_inventory(db, api.validator.hotkey, servers=2, jobs=1)
    published = Published(api)
    out = PurgeOut.model_validate(api.delete("/servers/node-0/deployments").json())
    assert out.status == "initiated" and len(out.deployments_purged) == 3
    assert all(p.server_name == "node-0" for p in out.deployments_purged)
    ids = [p.deployment_id for p in out.deployments_purged]
    assert published.take() == [_undeploy(ids, "purge server node-0")]
    assert api.delete("/servers/ghost/deployments").status_code == 404
    all_non_jobs = api.delete("/deployments/purge").json()["deployments_purged"]
    assert len(all_non_jobs) == 6
    ids = [p["deployment_id"] for p in all_non_jobs]
    assert published.take() == [_undeploy(ids, "purge all")]
    with_jobs = api.http.delete(
        "/deployments/purge", params={"include_jobs": "true"}, headers=api.headers()
    ).json()["deployments_purged"]
    assert len(with_jobs) == 8
    assert published.take() == [_undeploy([p["deployment_id"] for p in with_jobs], "purge all")]
    job_dep = next(p["deployment_id"] for p in with_jobs if p not in all_non_jobs)
    one = PurgeOneOut.model_validate(api.delete(f"/deployments/{job_dep}").json())
    assert one.deployment_purged.job_id is not None
    assert published.take() == [_undeploy([job_dep], "purge deployment")]
    assert api.delete(f"/deployments/{uuid.uuid4()}").status_code == 404
    assert published.take() == []
    published.close()
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM deployments")
        assert cur.fetchone() == (8,)


def test_purge_of_nothing_publishes_nothing(api: Api, db: psycopg2.extensions.connection) -> None:
    seed_inventory(db, api.validator.hotkey, servers=1, deployments=0)
    published = Published(api)
    assert api.delete("/servers/node-0/deployments").json() == {
        "status": "initiated",
        "deployments_purged": [],
    }
    assert api.delete("/deployments/purge").json()["deployments_purged"] == []
    assert published.take() == []
    published.close()


def test_kubeconfig_optional(api: Api) -> None:
    assert api.get("/servers/kubeconfig", purpose="kubeconfig").status_code == 404
    assert api.get("/servers/kubeconfig", purpose="management").status_code == 401


def test_registry_auth_absent_on_api_port(api: Api) -> None:
    resp = api.http.get("/registry/auth", headers={"X-Registry-Auth-Token": "x"})
    assert resp.status_code in (401, 404, 405) and "X-Chutes-Signature" not in resp.headers


def test_real_cli_management_commands(
    api: Api, db: psycopg2.extensions.connection, cli_for: Callable[[str], Cli]
) -> None:
    """chutes-miner 0.9.0 `unlock`, `purge-deployment -d/-n` and `delete-node` on a server
    running jobs: the preflight asks, "n" sends nothing, "y" publishes for gepetto."""
    seed_inventory(db, api.validator.hotkey, servers=1, jobs=1)
    run = cli_for(api.url)
    published = Published(api)
    assert run("lock", "--name", "node-0").returncode == 0
    unlock = run("unlock", "--name", "node-0")
    assert unlock.returncode == 0 and "lock status is now: False" in unlock.stdout
    deployments = api.get("/servers/").json()[0]["deployments"]
    job_dep = next(d["deployment_id"] for d in deployments if d["job_id"])
    one = run("purge-deployment", "-d", job_dep)
    assert one.returncode == 0, one.stdout + one.stderr
    assert json.loads(one.stdout)["deployment_purged"]["deployment_id"] == job_dep
    assert published.take() == [_undeploy([job_dep], "purge deployment")]
    non_jobs = sorted(d["deployment_id"] for d in deployments if not d["job_id"])
    for command, expected in (
        (("purge-deployment", "-n", "node-0"), [_undeploy(non_jobs, "purge server node-0")]),
        (("delete-node", "--name", "node-0"), [_server_deleted("uid-0")]),
    ):
        declined = run(*command, stdin="n\n")
        assert declined.returncode == 0 and "jobs running on server" in declined.stderr
        assert published.take() == []
        assert run(*command, stdin="y\n").returncode == 0
        events = published.take()
        if command[0] == "purge-deployment":
            events[0]["event_data"]["deployment_ids"].sort()
        assert events == expected
    missing = run("delete-node", "--name", "ghost")
    assert missing.returncode != 0 and published.take() == []
    published.close()
