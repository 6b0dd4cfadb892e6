"""create_app(settings): the lifespan owns every connection; clients can be injected."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
import redis.asyncio as aioredis
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_api import __version__
from control_api.clients.events import EventPublisher, RedisReplayStore
from control_api.clients.graval import GravalClient, HttpGravalClient
from control_api.clients.k8s import KubeClient, KubeUnavailable, UnavailableKube
from control_api.clients.validator import HttpValidatorClient, ValidatorClient
from control_api.core.config import Settings
from control_api.core.signing import keypair_from_seed
from control_api.db.pool import Database, DatabaseUnavailable, DbTimeouts
from control_api.deps import Resources
from control_api.guard import RequestGuard
from control_api.metrics import LATENCY, REQUESTS
from control_api.routers import deployments, servers
from control_api.schemas.api import Message as MessageOut
from control_api.services.bootstrap import AddNodeService

log = logging.getLogger(__name__)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware buffering): count and time each request by route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status[0])).inc()
            LATENCY.labels(path).observe(time.perf_counter() - start)


def real_kube(namespace: str) -> KubeClient | None:
    """The cluster's client, or None when no in-cluster or kubeconfig configuration works."""
    from control_api.clients.k8s import RealKubeClient

    try:
        return RealKubeClient(namespace)
    except Exception as exc:  # noqa: BLE001 - no cluster configuration: the caller decides
        log.warning("api.kubernetes_unavailable", extra={"error": type(exc).__name__})
        return None


def _unavailable(status: int, detail: str, retry_after_s: float = 0) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after_s)))} if retry_after_s else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def create_app(
    settings: Settings,
    *,
    kube: KubeClient | None = None,
    validator: ValidatorClient | None = None,
    graval: GravalClient | None = None,
    redis_prefix: str = "",
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keypair = keypair_from_seed(settings.miner_seed.get_secret_value())
        db = Database(settings.postgresql.get_secret_value(), settings.db_pool_max, timeouts)
        rt = settings.redis_timeout_s  # every command and connect bounded: Redis down = 503
        sync_redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=rt, socket_connect_timeout=rt, socket_keepalive=True
        )
        async_redis = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=rt, socket_connect_timeout=rt, socket_keepalive=True
        )
        own_validator = validator is None
        vclient: ValidatorClient = validator or HttpValidatorClient(
            keypair, timeout_s=settings.validator_timeout_s
        )
        kclient: KubeClient = kube or real_kube(settings.chutes_namespace) or UnavailableKube()
        app.state.res = Resources(
            settings=settings,
            db=db,
            replay=RedisReplayStore(async_redis, redis_prefix),
            events=EventPublisher(sync_redis, redis_prefix, settings.event_stream_maxlen),
            add_node=AddNodeService(
                settings, db, kclient, vclient, graval or HttpGravalClient(keypair)
            ),
            kube=kclient,
        )
        log.info("api.started", extra={"version": __version__})
        try:
            yield
        finally:
            if own_validator and isinstance(vclient, HttpValidatorClient):
                vclient.close()
            await async_redis.aclose()
            sync_redis.close()
            db.close()

    timeouts = DbTimeouts(
        connect_s=settings.db_connect_timeout_s,
        statement_s=settings.db_statement_timeout_s,
        pool_wait_s=settings.db_pool_timeout_s,
    )
    # No /openapi.json, /docs or /redoc: every route but /ping requires a signature.
    app = FastAPI(
        title="chutes miner API",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(MetricsMiddleware)  # outermost: refused requests are counted too

    # A dependency that is down or silent is a 503, whichever route needed it.
    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        log.warning("api.database_unavailable", extra={"path": request.url.path, "error": str(exc)})
        return _unavailable(503, "database unavailable", timeouts.retry_after_s)

    @app.exception_handler(redis.exceptions.RedisError)
    async def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("api.redis_unavailable", extra={"path": request.url.path})
        return _unavailable(503, "redis unavailable")

    @app.exception_handler(KubeUnavailable)
    async def kube_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("api.kubernetes_unavailable", extra={"path": request.url.path})
        return _unavailable(503, "kubernetes is not available")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "api.internal_error", extra={"path": request.url.path, "error": type(exc).__name__}
        )
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/ping", tags=["health"])
    async def ping() -> MessageOut:  # on the event loop: answers while every thread waits
        return MessageOut(message="pong")

    app.include_router(deployments.router)
    app.include_router(servers.router)
    return app
