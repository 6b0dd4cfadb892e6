"""Relay against the stand-in socket.io validator: auth payload, filter, validator field,
reconnect after a validator disconnect, auth_failed backoff, a Redis restart, first-connect
retries, the socket proxy, and single-active leases (in-process, and `python -m control_api
relay` processes killed and stopped)."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import socketio
from bittensor_wallet import Keypair
from control_api.clients.events import AsyncEventPublisher
from control_api.core.config import ValidatorConfig
from control_api.core.signing import d2_message, verify
from control_api.relay.client import AUTH_FAILED_MIN_WAIT_S, Relay, socket_proxy
from control_api.relay.lease import Lease

from tests.conftest import REDIS_URL, ServiceEnv
from tests.standins import StandinValidator, free_port


class OwnRedis:
    """A private redis-server with an append-only file, so a restart keeps its data."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self._dir = data_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "yes", "--dir", str(self._dir)]
        self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
        for _ in range(100):
            try:
                if redis.Redis(port=self.port).ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)

    def stop(self) -> None:
        self.procs[-1].terminate()
        self.procs[-1].wait(5)


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        # A missing server is a broken machine, not a reason to pass.
        pytest.fail("redis-server not installed: run tests/services.sh")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    for p in server.procs:
        p.terminate()
        p.wait(5)


def _events(port: int) -> list[dict[str, Any]]:
    client = redis.Redis(port=port)
    entries: Any = client.xrange("miner_events_stream")
    return [json.loads(e[1][b"event"]) for e in entries]


def _jobs(port: int) -> list[str]:
    return [e["event_data"]["job_id"] for e in _events(port) if e["event_type"] == "job_created"]


def _cfg(validator: StandinValidator, key: Keypair) -> ValidatorConfig:
    return ValidatorConfig(
        hotkey=key.ss58_address, registry="r", api=validator.url, socket=validator.url
    )


def _relay(
    cfg: ValidatorConfig, signer: Keypair, client: aioredis.Redis, ttl_s: float = 0, **kw: Any
) -> Relay:
    lease = Lease(client, "lease:socket:" + cfg.hotkey, ttl_s=ttl_s) if ttl_s else None
    options: dict[str, Any] = {"min_backoff_s": 0.05, "max_backoff_s": 0.2}
    options["auth_failed_wait_s"] = 0.3
    options.update(kw)
    return Relay(cfg, signer, AsyncEventPublisher(client).publish, lease=lease, **options)


async def _until(predicate: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `predicate()` holds (it may block briefly: it runs in a thread)."""
    start = time.monotonic()
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() - start < timeout_s, "condition not met in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_relay_end_to_end(
    validator: StandinValidator,
    miner_key: Keypair,
    validator_key: Keypair,
    own_redis: OwnRedis,
) -> None:
    port = own_redis.port
    validator.state.__init__()  # type: ignore[misc]
    cfg = _cfg(validator, validator_key)

    async def scenario() -> None:
        client = aioredis.Redis(port=port, socket_timeout=2)
        relay = _relay(cfg, miner_key, client, ttl_s=5.0, min_backoff_s=0.1, max_backoff_s=0.5)
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
        await _until(lambda: relay.connects >= 2, 10)
        # Redis restarts (shorter than the lease): events meanwhile are buffered, then delivered
        await asyncio.to_thread(own_redis.stop)
        await asyncio.to_thread(validator.broadcast, "job_created", {"job_id": "j1"})
        await asyncio.sleep(0.5)
        await asyncio.to_thread(own_redis.start)

        def delivered() -> bool:
            try:
                return "j1" in _jobs(port)
            except redis.exceptions.ConnectionError:
                return False

        await _until(delivered, 10)
        # auth_failed: the relay backs off and retries
        validator.state.reject_socket_auth = True
        await asyncio.to_thread(validator.drop_clients)
        before = len(validator.state.socket_auths)
        await _until(lambda: len(validator.state.socket_auths) >= before + 2, 5)
        await _stop(task)
        await client.aclose()

    asyncio.run(scenario())
    events = _events(port)
    types = [e["event_type"] for e in events]
    assert "instance_hot" not in types
    assert types.count("socket_reconnected") >= 2
    assert {"event_type": "socket_reconnected", "event_data": {"validator": cfg.hotkey}} in events
    gpu = next(e for e in events if e["event_type"] == "gpu_verified")
    assert gpu["event_data"] == {"gpu_id": "g1", "validator": validator_key.ss58_address}
    assert _jobs(port) == ["j1"]


def test_first_connect_retried_until_the_validator_is_up(
    miner_key: Keypair, validator_key: Keypair, own_redis: OwnRedis
) -> None:
    late = StandinValidator(validator_key.ss58_address, miner_key.ss58_address)
    cfg = _cfg(late, validator_key)

    async def scenario() -> None:
        client = aioredis.Redis(port=own_redis.port, socket_timeout=2)
        relay = _relay(cfg, miner_key, client)
        task = asyncio.create_task(relay.run())
        await asyncio.sleep(1.0)  # several refused connects, with backoff
        assert not relay.authenticated.is_set() and not task.done()
        await asyncio.to_thread(late.start)
        await asyncio.wait_for(relay.authenticated.wait(), 10)
        await _stop(task)
        await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        if late.loop.is_running():
            late.stop()
    assert [e["event_type"] for e in _events(own_redis.port)] == ["socket_reconnected"]


def test_auth_failed_waits_before_retrying(
    validator: StandinValidator, miner_key: Keypair, validator_key: Keypair, own_redis: OwnRedis
) -> None:
    """§4.3: retry >= 60 s after `auth_failed` (the default); the wait is honoured."""
    assert AUTH_FAILED_MIN_WAIT_S >= 60
    assert inspect.signature(Relay).parameters["auth_failed_wait_s"].default >= 60
    validator.state.__init__()  # type: ignore[misc]
    validator.state.reject_socket_auth = True
    cfg = _cfg(validator, validator_key)

    async def scenario() -> None:
        client = aioredis.Redis(port=own_redis.port, socket_timeout=2)
        relay = _relay(cfg, miner_key, client, auth_failed_wait_s=0.8)
        task = asyncio.create_task(relay.run())
        await _until(lambda: len(validator.state.socket_auths) >= 3, 10)
        await _stop(task)
        await client.aclose()

    asyncio.run(scenario())
    at = validator.state.socket_auth_at
    gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
    assert all(g >= 0.8 for g in gaps), gaps
    assert _events(own_redis.port) == []  # never authenticated: no socket_reconnected


def test_socket_proxy_follows_https_proxy_and_no_proxy(
    monkeypatch: pytest.MonkeyPatch, miner_key: Keypair
) -> None:
    for name in ("https", "http", "no", "all", "ws", "wss"):
        monkeypatch.delenv(f"{name}_proxy", raising=False)
        monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)
    assert socket_proxy("wss://ws.chutes.ai") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,10.0.0.0/8")
    assert socket_proxy("wss://ws.chutes.ai") == "http://127.0.0.1:3128"
    assert socket_proxy("https://ws.chutes.ai/") == "http://127.0.0.1:3128"
    assert socket_proxy("wss://internal.example") is None
    assert socket_proxy("ws://plain.example") is None  # no HTTP_PROXY

    seen: list[dict[str, Any]] = []

    class Recorder:
        connected = False

        def __init__(self, **kwargs: Any) -> None:
            seen.append(kwargs)

        def event(self, fn: Any) -> Any:
            return fn

        def on(self, _name: str) -> Callable[[Any], Any]:
            return lambda fn: fn

        async def connect(self, *_: Any, **__: Any) -> None:
            raise socketio.exceptions.ConnectionError("recorded")

    monkeypatch.setattr(socketio, "AsyncClient", Recorder)
    cfg = ValidatorConfig(
        hotkey=miner_key.ss58_address, registry="r", api="a", socket="wss://ws.chutes.ai"
    )
    relay = Relay(cfg, miner_key, lambda *_: asyncio.sleep(0))
    assert asyncio.run(relay._session()) is False
    assert seen[0]["websocket_extra_options"] == {"proxy": "http://127.0.0.1:3128"}
    assert seen[0]["ssl_verify"] is True and seen[0]["handle_sigint"] is False


def test_lease_never_renews_or_releases_another_holders(redis_prefix: str) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        key = redis_prefix + "lease:socket:x"
        a, b = Lease(client, key, ttl_s=2.0), Lease(client, key, ttl_s=2.0)
        assert await a.hold() and a.held
        assert not await b.hold() and not b.held
        assert await client.get(key) == a.token.encode()
        # a's lease lapses and b takes it: a can neither extend it nor delete it
        await client.pexpire(key, 1)
        await asyncio.sleep(0.05)
        assert await b.hold()
        assert not await a.hold() and not a.held
        await client.pexpire(key, 500)
        await a.release()
        assert await client.get(key) == b.token.encode()
        assert 0 < await client.pttl(key) <= 500
        await b.release()
        assert await client.get(key) is None
        # a key lost by Redis (restart without data) is taken back by the holder's renewal
        assert await a.hold()
        await client.delete(key)
        assert await a.hold() and await client.get(key) == a.token.encode()
        await client.aclose()

    asyncio.run(scenario())


def test_one_active_relay_per_validator(
    validator: StandinValidator, miner_key: Keypair, validator_key: Keypair, own_redis: OwnRedis
) -> None:
    """Two relays, one lease: one socket; a stop hands over within the TTL; a holder whose
    lease was taken closes its socket; every event reaches the stream exactly once."""
    port, ttl = own_redis.port, 1.5
    validator.state.__init__()  # type: ignore[misc]
    cfg = _cfg(validator, validator_key)
    key = "lease:socket:" + cfg.hotkey

    async def scenario() -> None:
        client = aioredis.Redis(port=port, socket_timeout=2)
        a = _relay(cfg, miner_key, client, ttl_s=ttl)
        b = _relay(cfg, miner_key, client, ttl_s=ttl)
        task_a = asyncio.create_task(a.run())
        await asyncio.wait_for(a.authenticated.wait(), 10)
        task_b = asyncio.create_task(b.run())
        await asyncio.sleep(2 * ttl)  # the standby stays standby past whole TTLs
        assert not b.authenticated.is_set() and len(validator.state.socket_auths) == 1
        assert validator.authenticated_clients() == 1
        await asyncio.to_thread(validator.broadcast, "job_created", {"job_id": "before"})
        await _until(lambda: "before" in _jobs(port), 5)
        await _stop(task_a)  # graceful: releases the lease
        assert await _until(b.authenticated.is_set, ttl) < ttl
        await _until(lambda: validator.authenticated_clients() == 1, 5)
        await asyncio.to_thread(validator.broadcast, "job_created", {"job_id": "after"})
        await _until(lambda: "after" in _jobs(port), 5)
        # someone else holds the key now (b's lease lapsed): b closes its socket
        await client.set(key, "another-holder", px=60_000)
        await _until(lambda: not b.authenticated.is_set(), 2 * ttl)
        await _until(lambda: validator.authenticated_clients() == 0, 5)
        await _stop(task_b)
        assert await client.get(key) == b"another-holder"  # never released by b
        await client.aclose()

    asyncio.run(scenario())
    assert _jobs(port) == ["before", "after"]
    assert [e["event_type"] for e in _events(port)].count("socket_reconnected") == 2


def test_redis_outage_closes_the_socket_until_the_lease_is_back(
    validator: StandinValidator, miner_key: Keypair, validator_key: Keypair, own_redis: OwnRedis
) -> None:
    """Unconfirmable lease (Redis down past its local share): no socket; back: reconnect."""
    validator.state.__init__()  # type: ignore[misc]
    cfg = _cfg(validator, validator_key)

    async def scenario() -> None:
        client = aioredis.Redis(port=own_redis.port, socket_timeout=1)
        relay = _relay(cfg, miner_key, client, ttl_s=1.0)
        task = asyncio.create_task(relay.run())
        await asyncio.wait_for(relay.authenticated.wait(), 10)
        await asyncio.to_thread(own_redis.stop)
        await _until(lambda: validator.authenticated_clients() == 0, 3)
        await asyncio.to_thread(own_redis.start)
        await asyncio.wait_for(relay.authenticated.wait(), 10)
        await _until(lambda: len(_events(own_redis.port)) == 2, 5)
        await _stop(task)
        await client.aclose()

    asyncio.run(scenario())
    assert [e["event_type"] for e in _events(own_redis.port)] == ["socket_reconnected"] * 2


def test_relay_processes_fail_over(
    validator: StandinValidator,
    validator_key: Keypair,
    service_env: ServiceEnv,
    own_redis: OwnRedis,
    tmp_path: Path,
) -> None:
    """`python -m control_api relay` x2: one connects; SIGTERM releases (takeover within the
    TTL); SIGKILL does not (takeover once the lease expires); no event twice."""
    validator.state.__init__()  # type: ignore[misc]
    ttl = 2.0
    env = os.environ | service_env(
        REDIS_URL=f"redis://127.0.0.1:{own_redis.port}/0", RELAY_LEASE_TTL_S=str(ttl)
    )
    r = redis.Redis(port=own_redis.port)
    key = f"lease:socket:{validator_key.ss58_address}"
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start() -> subprocess.Popen[bytes]:
        log = tmp_path / f"relay-{len(procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "control_api", "relay"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs[proc.pid] = proc
        wait_for(lambda: b"relay.started" in log.read_bytes(), 30)
        return proc

    def holder() -> subprocess.Popen[bytes] | None:
        token: Any = r.get(key)
        return procs.get(int(token.split(b":")[1])) if token else None

    def wait_for(predicate: Callable[[], bool], timeout_s: float) -> float:
        start_at = time.monotonic()
        while not predicate():
            if time.monotonic() - start_at > timeout_s:
                logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("relay-*.log")}
                raise AssertionError(f"condition not met in {timeout_s} s: {logs}")
            time.sleep(0.05)
        return time.monotonic() - start_at

    def sole_holder_other_than(old: subprocess.Popen[bytes]) -> bool:
        new = holder()
        return new not in (None, old) and validator.authenticated_clients() == 1

    try:
        start()
        start()
        wait_for(lambda: holder() is not None and validator.authenticated_clients() == 1, 20)
        time.sleep(ttl)
        assert validator.authenticated_clients() == 1 and len(validator.state.socket_auths) == 1
        validator.broadcast("job_created", {"job_id": "j1"})
        wait_for(lambda: "j1" in _jobs(own_redis.port), 5)

        first = holder()
        assert first is not None
        first.send_signal(signal.SIGTERM)
        assert first.wait(10) == 0
        assert wait_for(lambda: sole_holder_other_than(first), ttl + 5) < ttl
        validator.broadcast("job_created", {"job_id": "j2"})
        wait_for(lambda: "j2" in _jobs(own_redis.port), 5)

        start()  # a new standby
        second = holder()
        assert second is not None
        second.kill()  # no release: the standby waits for the lease to expire
        second.wait(5)
        took = wait_for(lambda: sole_holder_other_than(second), ttl + 5)
        assert took < ttl + ttl / 3 + 1.5, took  # expiry + one standby poll + connect
        validator.broadcast("job_created", {"job_id": "j3"})
        wait_for(lambda: "j3" in _jobs(own_redis.port), 5)
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(5)
        r.close()
    assert _jobs(own_redis.port) == ["j1", "j2", "j3"]
    reconnects = [e for e in _events(own_redis.port) if e["event_type"] == "socket_reconnected"]
    assert len(reconnects) == 3
