"""HTTP routes of the bootstrap (runtime contract §6). Build with `create_app`; no globals."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graval_bootstrap import __version__
from graval_bootstrap.auth import AuthError, ReplayCache, Verifier
from graval_bootstrap.config import Settings
from graval_bootstrap.gpu import BackendError, DecryptError, DeviceBackend

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
MAX_CHALLENGE = 4096
MAX_TOKEN_RESPONSE = 64 * 1024
TOKEN_TIMEOUT_S = 10.0
IV_LEN = 16
PURPOSE_GRAVAL = "graval"
U64_MAX = 2**64 - 1

T = TypeVar("T")
HttpClientFactory = Callable[[], httpx.AsyncClient]


class Challenge(BaseModel):
    """`POST /prove` body."""

    model_config = ConfigDict(extra="ignore")

    seed: Annotated[StrictInt, Field(ge=0, le=U64_MAX)]
    iterations: Annotated[StrictInt, Field(ge=1, le=10)] = 1
    ciphertext: dict[StrictStr, StrictStr] | None = None


class TokenRequest(BaseModel):
    """`POST /remote_token` body."""

    model_config = ConfigDict(extra="ignore")

    token_url: Annotated[StrictStr, Field(min_length=1, max_length=2048)]


def default_http_client() -> httpx.AsyncClient:
    """Verified TLS, no redirects, proxies from the environment (HTTPS_PROXY/NO_PROXY)."""
    return httpx.AsyncClient(follow_redirects=False, timeout=TOKEN_TIMEOUT_S, verify=True)


def create_app(
    settings: Settings,
    backend: DeviceBackend,
    *,
    clock: Callable[[], float] = time.time,
    http_client: HttpClientFactory = default_http_client,
) -> FastAPI:
    """The bootstrap app over one backend; every GPU call runs in a thread under one lock."""
    verifier = Verifier(settings.miner_hotkey, ReplayCache(), clock=clock)
    whitelist = frozenset(settings.validator_whitelist)
    miner_only = frozenset({settings.miner_hotkey})
    gpu_lock = asyncio.Lock()
    uuid_index = {uuid: i for i, uuid in enumerate(backend.uuids)}

    app = FastAPI(
        title="GraVal bootstrap",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(AccessLog)

    async def on_gpu(func: Callable[[], T]) -> T:
        async with gpu_lock:
            # Not cancellable: a client that goes away cannot free the lock mid-call.
            return await anyio.to_thread.run_sync(func)

    def authorize(request: Request, purpose: str, signers: Collection[str]) -> None:
        try:
            verifier.verify(request.headers, purpose, signers)
        except AuthError as exc:
            log.warning("auth rejected on %s: %s", request.url.path, exc.reason)
            raise HTTPException(401, "unauthorized") from None

    @app.exception_handler(BackendError)
    async def _backend_error(request: Request, exc: BackendError) -> JSONResponse:
        log.error("gpu call failed on %s: %s", request.url.path, type(exc).__name__)
        return JSONResponse({"detail": "gpu error"}, status_code=500)

    @app.get("/ping", response_class=PlainTextResponse)
    async def ping() -> str:
        return "pong"

    @app.get("/devices")
    async def devices(request: Request) -> dict[str, Any]:
        authorize(request, PURPOSE_GRAVAL, miner_only)
        count = len(backend.uuids)
        infos = await on_gpu(lambda: [backend.device_info(i) for i in range(count)])
        return {"devices": infos}

    @app.post("/prove")
    async def prove(request: Request) -> dict[str, Any]:
        body = await read_body(request)
        authorize(request, hashlib.sha256(body).hexdigest(), whitelist)
        challenge = parse(Challenge, body)
        blobs = split_ciphertexts(challenge.ciphertext or {}, uuid_index)
        seed, iterations = challenge.seed, challenge.iterations

        def work() -> dict[str, Any]:
            proof = backend.prove(seed, iterations)
            infos = [backend.device_info(i) for i in range(len(backend.uuids))]
            plaintext = {
                uuid: backend.decrypt(seed, uuid_index[uuid], iv, ct)
                for uuid, (iv, ct) in blobs.items()
            }
            return {"devices": infos, "seed": seed, "proof": proof, "plaintext": plaintext}

        try:
            return await on_gpu(work)
        except DecryptError:
            raise HTTPException(400, "decrypt failed") from None

    @app.get("/info", response_class=PlainTextResponse)
    async def info(request: Request) -> str:
        authorize(request, PURPOSE_GRAVAL, whitelist)
        challenge = request.query_params.get("challenge")
        if challenge is None:
            raise HTTPException(422, "challenge required")
        if not challenge or len(challenge.encode()) > MAX_CHALLENGE:
            raise HTTPException(400, "challenge empty or too long")
        return await on_gpu(lambda: backend.info(challenge))

    @app.post("/remote_token", response_class=PlainTextResponse)
    async def remote_token(request: Request) -> str:
        body = await read_body(request)
        authorize(request, hashlib.sha256(body).hexdigest(), whitelist)
        url = token_url(parse(TokenRequest, body).token_url, settings.remote_token_allowed_hosts)
        return await fetch_token(http_client, url)

    return app


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The raw body, refused with 413 past `limit` (before auth: the hash needs the bytes)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, "body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, "body too large")
        chunks.append(chunk)
    return b"".join(chunks)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: bytes) -> M:
    """Validate a JSON body; 422 lists field errors without echoing input values."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise HTTPException(422, [{"loc": e["loc"], "msg": e["msg"]} for e in errors]) from None


def split_ciphertexts(
    entries: dict[str, str], uuid_index: dict[str, int]
) -> dict[str, tuple[bytes, bytes]]:
    """uuid -> (iv, ciphertext) from base64(iv[16] + ct); 400 on any bad entry."""
    if len(entries) > len(uuid_index):
        raise HTTPException(400, "more ciphertexts than GPUs")
    out: dict[str, tuple[bytes, bytes]] = {}
    for uuid, data in entries.items():
        if uuid not in uuid_index:
            raise HTTPException(400, "unknown device uuid")
        try:
            blob = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(400, "ciphertext is not base64") from None
        if len(blob) <= IV_LEN:
            raise HTTPException(400, "ciphertext too short")
        out[uuid] = (blob[:IV_LEN], blob[IV_LEN:])
    return out


def token_url(raw: str, allowed: Collection[str]) -> httpx.URL:
    """The token URL if https, without credentials, on an allow-listed host[:port]; else 400."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError):
        raise HTTPException(400, "token_url is not a URL") from None
    if url.scheme != "https" or not url.host or url.userinfo:
        raise HTTPException(400, "token_url must be https without credentials")
    host = url.host.lower()
    port = url.port or 443
    if not (host in allowed and port == 443) and f"{host}:{port}" not in allowed:
        raise HTTPException(400, "token_url host not allowed")
    return url


async def fetch_token(http_client: HttpClientFactory, url: httpx.URL) -> str:
    """GET `url` once: 200, ≤ 64 KiB, JSON object with a string `token`; else 502."""
    try:
        async with asyncio.timeout(TOKEN_TIMEOUT_S), http_client() as client:
            request = client.build_request("GET", url, headers={"Accept": "application/json"})
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code != 200:
                    raise _Upstream(f"status {response.status_code}")
                raw = await _read_capped(response.aiter_bytes(), MAX_TOKEN_RESPONSE)
            finally:
                await response.aclose()
    except _Upstream as exc:
        log.warning("remote token fetch refused: %s", exc)
        raise HTTPException(502, "token fetch failed") from None
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        log.warning("remote token fetch failed: %s", type(exc).__name__)
        raise HTTPException(502, "token fetch failed") from None
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("token"), str):
        log.warning("remote token fetch refused: no string token")
        raise HTTPException(502, "token fetch failed")
    token: str = payload["token"]
    return token


class _Upstream(Exception):
    """The token server answered, but not acceptably."""


async def _read_capped(chunks: Any, limit: int) -> bytes:
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise _Upstream("response over size limit")
    return bytes(buf)


class AccessLog:
    """Method, path (never the query string), status and time; no headers or bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            log.info(
                "%s %s %d %.0fms",
                scope["method"],
                scope["path"],
                status,
                (time.monotonic() - start) * 1000,
            )
