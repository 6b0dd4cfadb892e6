"""One GPU lock, GPU work in a thread: /ping answers while a slow proof runs."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

if TYPE_CHECKING:
    from conftest import AppFactory, FakeMiner, Keys

pytestmark = pytest.mark.anyio

DELAY = 0.8


async def test_ping_responsive_and_proofs_serialized(
    make_app: AppFactory, miner: FakeMiner, keys: Keys
) -> None:
    miner.prove_delay = DELAY
    app = make_app()
    transport = httpx.ASGITransport(app=app)
    ping_latencies: list[float] = []
    statuses: list[int] = []

    async with httpx.AsyncClient(transport=transport, base_url="http://bootstrap") as client:

        async def prove(seed: int) -> None:
            body = json.dumps({"seed": seed}).encode()
            response = await client.post(
                "/prove", content=body, headers=keys.body(keys.validator, body)
            )
            statuses.append(response.status_code)

        async def pings() -> None:
            await anyio.sleep(0.1)  # let a proof take the lock first
            while miner.prove_calls < 2 or miner.active:
                start = time.monotonic()
                response = await client.get("/ping")
                ping_latencies.append(time.monotonic() - start)
                assert response.text == "pong"
                await anyio.sleep(0.05)

        start = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(prove, 1)
            group.start_soon(prove, 2)
            group.start_soon(pings)
        elapsed = time.monotonic() - start

    assert statuses == [200, 200]
    assert miner.max_active == 1, "two proofs ran on the GPUs at once"
    assert elapsed >= 2 * DELAY
    assert len(ping_latencies) >= 10
    assert max(ping_latencies) < 0.25, f"/ping stalled: {max(ping_latencies):.3f}s"
