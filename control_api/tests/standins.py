"""Stand-ins for the validator (HTTP + socket.io) and GraVal bootstrap, served by aiohttp on
127.0.0.1 in a background thread, and an in-memory stand-in for Kubernetes. Signatures are
checked by tests/contract_sig.py (bittensor-wallet directly, not the API's signing code)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web
from control_api.clients.k8s import (
    GravalSpec,
    GravalState,
    KubeApiError,
    NodeInfo,
    build_kubeconfig,
)

from tests.contract_sig import d1_valid, d2_valid, sha256_hex

STANDIN_CA = b"-----BEGIN CERTIFICATE-----\nc3RhbmQtaW4=\n-----END CERTIFICATE-----\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_device(i: int) -> dict[str, Any]:
    return {
        "uuid": f"{i:032x}",
        "name": "NVIDIA H200",
        "memory": 150_000_000_000,
        "processors": 132,
        "clock_rate": 1_980_000.0,
        "max_threads_per_processor": 2048,
    }


@dataclass
class ValidatorState:
    supported: dict[str, Any] = field(default_factory=lambda: {"h200": {}, "h100": {}})
    supported_status: int = 200
    register_status: int = 202
    statuses: list[str] = field(default_factory=lambda: ["pending", "verified"])
    seed: int = 42
    devices: list[dict[str, Any]] = field(
        default_factory=lambda: [make_device(i) for i in range(2)]
    )
    registered: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    auth_errors: list[str] = field(default_factory=list)
    socket_auths: list[dict[str, Any]] = field(default_factory=list)
    socket_auth_at: list[float] = field(default_factory=list)
    reject_socket_auth: bool = False
    poll_count: int = 0


class StandinValidator:
    """Validator HTTP + socket.io, and the GraVal bootstrap's /devices, on one port."""

    def __init__(
        self,
        validator_ss58: str,
        miner_ss58: str,
        host: str = "127.0.0.1",
        port: int = 0,
        also: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.hotkey = validator_ss58
        self.miner = miner_ss58
        self.state = ValidatorState()
        self.host = host  # the lab's end-to-end run listens on the lab network's gateway
        self.also = also  # more routes on the same port (the lab: MinerApiStandin.add_routes)
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _check_d2(self, request: web.Request, x: str) -> bool:
        ok = d2_valid(request.headers, self.miner, x)
        if not ok:
            self.state.auth_errors.append(request.path)
        return ok

    async def supported(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.supported, status=self.state.supported_status)

    async def register(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not self._check_d2(request, sha256_hex(raw)):
            return web.json_response({"detail": "bad signature"}, status=401)
        body = json.loads(raw)
        self.state.registered.append(body)
        if self.state.register_status != 202:
            return web.json_response({"detail": "refused"}, status=self.state.register_status)
        nodes = [{**n, "seed": self.state.seed} for n in body["nodes"]]
        return web.json_response({"nodes": nodes, "task_id": f"{self.miner}::task1"}, status=202)

    async def verification_status(self, request: web.Request) -> web.Response:
        if not self._check_d2(request, "graval"):
            return web.json_response({"detail": "bad signature"}, status=401)
        st = self.state
        status = st.statuses[min(st.poll_count, len(st.statuses) - 1)]
        st.poll_count += 1
        out: dict[str, Any] = {"status": status}
        if status in ("error", "failed"):
            out["error"] = "proof rejected"
        return web.json_response(out)

    async def delete_node(self, request: web.Request) -> web.Response:
        if not self._check_d2(request, "nodes"):
            return web.json_response({"detail": "bad signature"}, status=401)
        gpu_id = request.match_info["gpu_id"]
        self.state.deleted.append(gpu_id)
        return web.json_response({"node_id": gpu_id, "deleted": True})

    async def devices(self, request: web.Request) -> web.Response:
        if not d1_valid(request.headers, self.miner, self.miner, "graval"):
            self.state.auth_errors.append(request.path)
            return web.json_response({"detail": "unauthorized"}, status=401)
        return web.json_response({"devices": self.state.devices})

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        self.sio.attach(app)
        app.router.add_get("/nodes/supported", self.supported)
        app.router.add_post("/nodes/", self.register)
        app.router.add_get("/nodes/verification_status", self.verification_status)
        app.router.add_delete("/nodes/{gpu_id}", self.delete_node)
        app.router.add_get("/devices", self.devices)
        if self.also is not None:
            self.also(app)

        @self.sio.on("authenticate")  # type: ignore[untyped-decorator]
        async def authenticate(sid: str, data: dict[str, Any]) -> None:
            self.state.socket_auths.append(data)
            self.state.socket_auth_at.append(time.monotonic())
            ok = not self.state.reject_socket_auth and d2_valid(data, self.miner, "sockets")
            if ok:
                await self.sio.enter_room(sid, "miners")
                await self.sio.emit("auth_success", {"message": "Authenticated"}, to=sid)
            else:
                await self.sio.emit("auth_failed", {"error": "nope"}, to=sid)

        # Clients that keep connections open (the relay's socket, the scheduler's keep-alive
        # HTTP client in the lab) must not hold stop() up for aiohttp's default 60 s.
        self._runner = web.AppRunner(app, shutdown_timeout=2.0)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self.loop.run_until_complete(site.start())
        self.loop.run_forever()

    def start(self) -> StandinValidator:
        self._thread.start()
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("stand-in validator did not start")

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def broadcast(self, reason: str, data: dict[str, Any]) -> None:
        self.call(self.sio.emit("miner_broadcast", {"reason": reason, "data": data}, room="miners"))

    def authenticated_clients(self) -> int:
        """Sockets that passed `authenticate` and are still connected."""

        async def _count() -> int:
            return len(list(self.sio.manager.get_participants("/", "miners")))

        return int(self.call(_count()))

    def drop_clients(self) -> None:
        async def _drop() -> None:
            for sid in list(self.sio.manager.get_participants("/", "miners")):
                await self.sio.disconnect(sid[0] if isinstance(sid, tuple) else sid)

        self.call(_drop())

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())

        async def _cancel_the_rest() -> None:  # engine.io's ping/service tasks
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.call(_cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class StandinKube:
    """In-memory Kubernetes: nodes, labels, graval objects with a scripted state."""

    devices_url: str
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    labels_set: dict[str, dict[str, str]] = field(default_factory=dict)
    graval_states: list[GravalState] = field(default_factory=lambda: ["pending", "ready"])
    graval_reason: str = ""
    busy: str | None = None
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    create_delay_s: float = 0.0
    delete_delay_s: float = 0.0
    service_accounts: set[str] = field(default_factory=lambda: {"chutes-operator"})
    tokens_issued: list[tuple[str, int]] = field(default_factory=list)
    runtime_classes: set[str] = field(default_factory=lambda: {"nvidia-container-runtime"})
    # raised by create_graval, as the real client raises the API's refusals
    create_error: KubeApiError | None = None
    _polls: int = 0

    def add_node(self, name: str, uid: str, gpus: int = 2, **overrides: Any) -> NodeInfo:
        labels = {
            "chutes/external-ip": "203.0.113.10",
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/gpu.memory": "143771",
        }
        labels.update(overrides.pop("labels", {}))
        node = NodeInfo(
            name=name,
            uid=uid,
            labels=labels,
            ready=overrides.pop("ready", True),
            gpu_capacity=overrides.pop("gpu_capacity", gpus),
            cpus=overrides.pop("cpus", 32),
            memory_gib=overrides.pop("memory_gib", 256.0),
        )
        self.nodes[name] = node
        return node

    def get_node(self, name: str) -> NodeInfo | None:
        return self.nodes.get(name)

    def node_busy(self, name: str) -> str | None:
        return self.busy

    def label_node(self, name: str, labels: dict[str, str]) -> None:
        self.labels_set[name] = labels

    def runtime_class_exists(self, name: str) -> bool:
        return name in self.runtime_classes

    def check_graval(self, spec: GravalSpec, labels: dict[str, str]) -> None:
        pass  # the API server's dry runs: test_add_node_k8s.py runs them for real

    def create_graval(self, spec: GravalSpec) -> int:
        time.sleep(self.create_delay_s)
        if self.create_error is not None:
            raise self.create_error
        self.created.append(spec.job_name)
        return 31000

    def graval_state(self, spec: GravalSpec) -> tuple[GravalState, str]:
        state = self.graval_states[min(self._polls, len(self.graval_states) - 1)]
        self._polls += 1
        return state, self.graval_reason

    def graval_url(self, spec: GravalSpec) -> str:
        return self.devices_url

    def delete_graval(self, spec: GravalSpec, wait_s: float = 120.0) -> None:
        time.sleep(self.delete_delay_s)
        self.deleted.append(spec.job_name)

    def service_account_kubeconfig(
        self, service_account: str, server: str, ttl_s: int
    ) -> dict[str, Any] | None:
        if service_account not in self.service_accounts:
            return None
        self.tokens_issued.append((service_account, ttl_s))
        return build_kubeconfig(
            server=server,
            ca_pem=STANDIN_CA,
            namespace="chutes",
            user=service_account,
            token=f"stand-in-token-{len(self.tokens_issued)}",
        )
