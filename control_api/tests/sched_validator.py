"""A stand-in validator for the scheduler's HTTP calls (aiohttp on 127.0.0.1, own thread):
chute objects, launch configs, instance and job releases, the metrics, chutes and instances
streams (`/miner/metrics/`, `/miner/chutes/`, `/miner/instances/`), utilization and rolling
updates. It can cut a stream off midway or send a malformed item, as a failing validator
would. D2 signatures are checked by tests/contract_sig.py (bittensor-wallet
directly, not the code under test)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.contract_sig import d2_valid
from tests.standins import free_port


@dataclass
class MinerApiState:
    chutes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    launch_status: int = 200
    launches: list[dict[str, str]] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict)  # config_id -> the token handed out
    deleted_instances: list[tuple[str, str]] = field(default_factory=list)
    released_jobs: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    utilization: list[dict[str, Any]] = field(default_factory=list)
    rolling: list[dict[str, Any]] = field(default_factory=list)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)  # by instance_id
    bad_signatures: list[str] = field(default_factory=list)
    fail_next: int = 0  # answer 503 this many times first
    cut_after: int | None = None  # list streams: close the connection after this many items
    garbage_item: dict[str, Any] | None = None  # list streams: send this item first
    no_items_marker: bool = True  # False: an empty instance list is sent as silence


class MinerApiStandin:
    def __init__(self, miner_ss58: str) -> None:
        self.miner = miner_ss58
        self.state = MinerApiState()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _auth(self, request: web.Request, purpose: str) -> web.Response | None:
        if self.state.fail_next > 0:
            self.state.fail_next -= 1
            return web.json_response({"detail": "busy"}, status=503)
        if not d2_valid(request.headers, self.miner, purpose):
            self.state.bad_signatures.append(request.path)
            return web.json_response({"detail": "bad signature"}, status=401)
        return None

    async def chute(self, request: web.Request) -> web.Response:
        refused = self._auth(request, "miner")
        if refused:
            return refused
        key = (request.match_info["chute_id"], request.match_info["version"])
        if key not in self.state.chutes:
            return web.json_response({"detail": "not found"}, status=404)
        return web.json_response(self.state.chutes[key])

    async def launch(self, request: web.Request) -> web.Response:
        refused = self._auth(request, "launch")
        if refused:
            return refused
        if self.state.launch_status != 200:
            return web.json_response({"detail": "no"}, status=self.state.launch_status)
        self.state.launches.append(dict(request.query))
        token, config_id = "jwt." + uuid.uuid4().hex, str(uuid.uuid4())
        self.state.issued[config_id] = token
        return web.json_response({"token": token, "config_id": config_id})

    async def delete_instance(self, request: web.Request) -> web.Response:
        refused = self._auth(request, "instances")
        if refused:
            return refused
        pair = (request.match_info["chute_id"], request.match_info["instance_id"])
        self.state.deleted_instances.append(pair)
        if self.state.instances.pop(pair[1], None) is None:
            return web.json_response({"detail": "not found"}, status=404)
        return web.json_response({"instance_id": pair[1], "deleted": True})

    async def release_job(self, request: web.Request) -> web.Response:
        refused = self._auth(request, "miner")
        if refused:
            return refused
        self.state.released_jobs.append(request.match_info["job_id"])
        return web.json_response({})

    async def _list(
        self, request: web.Request, rows: list[dict[str, Any]], explicit_null: bool = False
    ) -> web.StreamResponse:
        """A `data: <json>` list stream (chunked), `data: NO_ITEMS` for an empty list when
        asked with `explicit_null=True`."""
        refused = self._auth(request, "miner")
        if refused:
            return refused
        resp = web.StreamResponse()
        await resp.prepare(request)
        if self.state.garbage_item is not None:
            rows = [self.state.garbage_item, *rows]
        if not rows and explicit_null and self.state.no_items_marker:
            await resp.write(b"data: NO_ITEMS\n\n")
        for n, row in enumerate(rows):
            if self.state.cut_after is not None and n >= self.state.cut_after:
                assert request.transport is not None
                request.transport.close()  # no closing chunk: the client sees a cut stream
                return resp
            await resp.write(f"data: {json.dumps(row)}\n\n".encode())
        await resp.write_eof()
        return resp

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request, self.state.metrics)

    async def chute_list(self, request: web.Request) -> web.StreamResponse:
        latest = {key[0]: chute for key, chute in self.state.chutes.items()}
        return await self._list(request, list(latest.values()))

    async def instance_list(self, request: web.Request) -> web.StreamResponse:
        explicit = request.query.get("explicit_null", "").lower() == "true"
        return await self._list(request, list(self.state.instances.values()), explicit)

    async def utilization(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.utilization)

    async def rolling(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.rolling)

    def add_routes(self, app: web.Application) -> None:
        """The scheduler's validator routes, on this stand-in's own server (`start`) or on
        another one's (the validator stand-in of standins.py serves both in the lab)."""
        app.router.add_get("/miner/chutes/{chute_id}/{version}", self.chute)
        app.router.add_get("/instances/launch_config", self.launch)
        app.router.add_delete("/instances/{chute_id}/{instance_id}", self.delete_instance)
        app.router.add_delete("/miner/jobs/{job_id}", self.release_job)
        app.router.add_get("/miner/metrics/", self.metrics)
        app.router.add_get("/miner/chutes/", self.chute_list)
        app.router.add_get("/miner/instances/", self.instance_list)
        app.router.add_get("/chutes/utilization", self.utilization)
        app.router.add_get("/chutes/rolling_updates", self.rolling)

    def start(self) -> MinerApiStandin:
        app = web.Application()
        self.add_routes(app)
        self._thread.start()

        async def serve() -> None:
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def add_chute(self, chute_id: str, version: str = "1", gpu_count: int = 1, **kw: Any) -> None:
        self.state.chutes[(chute_id, version)] = {
            "chute_id": chute_id,
            "name": f"name-{chute_id}",
            "image": "user/img:1",
            "code": "print('hi')",
            "filename": "app.py",
            "ref_str": "app:chute",
            "version": version,
            "supported_gpus": ["h200"],
            "node_selector": {"gpu_count": gpu_count},
            "chutes_version": "0.3.5",
            **kw,
        }

    def add_instance(self, chute_id: str, config_id: str | None, **kw: Any) -> str:
        instance_id = kw.pop("instance_id", None) or str(uuid.uuid4())
        self.state.instances[instance_id] = {
            "instance_id": instance_id,
            "chute_id": chute_id,
            "config_id": config_id,
            "miner_hotkey": self.miner,
            "active": False,
            "verified": False,
            **kw,
        }
        return instance_id
