"""Relay against the stand-in socket.io validator: auth payload, filter, validator field,
reconnect after a validator disconnect, auth_failed backoff, and a Redis restart."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from control_api.clients.events import AsyncEventPublisher
from control_api.config import ValidatorConfig
from control_api.relay.client import Relay
from control_api.services.signing import d2_message, verify

from tests.standins import StandinValidator, free_port


def redis_argv(port: int, data_dir: Any) -> list[str]:
    """A private redis-server with an append-only file, so a restart keeps its data."""
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--dir",
        str(data_dir),
    ]


@pytest.fixture()
def own_redis(tmp_path: Any) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(
            subprocess.Popen(
                redis_argv(port, tmp_path),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        for _ in range(100):
            try:
                if redis.Redis(port=port).ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)

    start()
    yield port, procs
    for p in procs:
        p.terminate()
        p.wait(5)


def _events(port: int) -> list[dict[str, Any]]:
    client = redis.Redis(port=port)
    entries: Any = client.xrange("miner_events_stream")
    return [json.loads(e[1][b"event"]) for e in entries]


def test_relay_end_to_end(
    validator: StandinValidator,
    miner_key: Keypair,
    validator_key: Keypair,
    own_redis: tuple[int, list[subprocess.Popen[bytes]]],
    tmp_path: Any,
) -> None:
    port, procs = own_redis
    validator.state.__init__()  # type: ignore[misc]
    cfg = ValidatorConfig(
        hotkey=validator_key.ss58_address, registry="r", api=validator.url, socket=validator.url
    )

    async def scenario() -> None:
        client = aioredis.Redis(port=port, socket_timeout=2)
        publisher = AsyncEventPublisher(client)
        relay = Relay(
            cfg,
            miner_key,
            publisher.publish,
            min_backoff_s=0.1,
            max_backoff_s=0.5,
            auth_failed_wait_s=0.3,
        )
        task = asyncio.create_task(relay.run())
        await asyncio.wait_for(relay.authenticated.wait(), 10)
        auth = validator.state.socket_auths[0]
        assert verify(
            auth["X-Chutes-Hotkey"],
            d2_message(auth["X-Chutes-Hotkey"], auth["X-Chutes-Nonce"], "sockets"),
            bytes.fromhex(auth["X-Chutes-Signature"]),
        )
        await asyncio.to_thread(
            validator.broadcast, "gpu_verified", {"gpu_id": "g1", "validator": "spoofed"}
        )
        await asyncio.to_thread(validator.broadcast, "instance_hot", {"x": 1})
        await asyncio.sleep(0.3)
        # validator drops us: reconnect, re-auth, socket_reconnected again
        await asyncio.to_thread(validator.drop_clients)
        for _ in range(100):
            if relay.connects >= 2:
                break
            await asyncio.sleep(0.1)
        assert relay.connects >= 2
        # Redis restarts: events published meanwhile are buffered and delivered afterwards
        procs[-1].terminate()
        procs[-1].wait(5)
        await asyncio.to_thread(validator.broadcast, "job_created", {"job_id": "j1"})
        await asyncio.sleep(0.5)
        await asyncio.to_thread(
            lambda: procs.append(
                subprocess.Popen(
                    redis_argv(port, tmp_path),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        )
        for _ in range(100):
            await asyncio.sleep(0.1)
            try:
                if any(e["event_type"] == "job_created" for e in _events(port)):
                    break
            except redis.exceptions.ConnectionError:
                continue
        # auth_failed: the relay backs off and retries
        validator.state.reject_socket_auth = True
        await asyncio.to_thread(validator.drop_clients)
        before = len(validator.state.socket_auths)
        for _ in range(50):
            if len(validator.state.socket_auths) >= before + 2:
                break
            await asyncio.sleep(0.1)
        assert len(validator.state.socket_auths) >= before + 2
        task.cancel()
        await client.aclose()

    asyncio.run(scenario())
    events = _events(port)
    types = [e["event_type"] for e in events]
    assert "instance_hot" not in types
    assert types.count("socket_reconnected") >= 2
    gpu = next(e for e in events if e["event_type"] == "gpu_verified")
    assert gpu["event_data"] == {"gpu_id": "g1", "validator": validator_key.ss58_address}
    assert any(e["event_type"] == "job_created" for e in events)
