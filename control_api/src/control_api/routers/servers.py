"""Server routes used by the chutes-miner CLI (contract §2.2). Parse, call, shape."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from control_api.clients.k8s import KubeApiError, KubeUnavailable
from control_api.db import queries
from control_api.db.pool import Database
from control_api.deps import BodyAuth, Kubeconfig, Management, ResDep
from control_api.routers.events import publish
from control_api.schemas.api import (
    AddNodeBody,
    DeleteServerOut,
    Detail,
    PreflightOut,
    PurgeOut,
    ServerOut,
)
from control_api.services.bootstrap import AddNodeRefused, AddNodeRequest, Attempt, sse_event

log = logging.getLogger(__name__)
router = APIRouter(prefix="/servers", tags=["servers"])
_JSON = "application/json"
_401: dict[int | str, dict[str, Any]] = {401: {"model": Detail}}
_404: dict[int | str, dict[str, Any]] = {401: {"model": Detail}, 404: {"model": Detail}}


def _json(text: str | bytes) -> Response:
    return Response(content=text, media_type=_JSON)


def _server_or_404(res: ResDep, id_or_name: str) -> queries.ServerRef:
    with res.db.connection() as conn:
        ref = queries.find_server(conn, id_or_name)
    if ref is None:
        raise HTTPException(404, "Node not found")
    return ref


class InventoryCache:
    """`GET /servers/` bytes for one inventory version (migration 0003: every committed change
    to servers, GPUs, deployments or chutes, by any process, bumps it in the database).

    A request reads the version (one row) and answers the cached bytes while it is unchanged;
    otherwise one thread renders version and inventory from one snapshot while the others wait
    for that render instead of starting their own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (version, bytes) replaced as one object, so a reader never pairs one with the other's
        self._entry: tuple[queries.InventoryVersion, bytes] | None = None

    def _cached(self, version: queries.InventoryVersion) -> bytes | None:
        entry = self._entry
        if entry is None or entry[0][0] != version[0] or entry[0][1] < version[1]:
            return None
        return entry[1]  # this version or a newer one rendered meanwhile

    def get(self, db: Database) -> bytes:
        with db.connection() as conn:
            version = queries.inventory_version(conn)
        body = self._cached(version)
        if body is not None:
            return body
        with self._lock:
            body = self._cached(version)  # rendered while this request waited
            if body is None:
                with db.connection() as conn:
                    entry = queries.list_servers_json_versioned(conn)
                self._entry = entry
                body = entry[1]
            return body


_CACHES: weakref.WeakKeyDictionary[Database, InventoryCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def inventory_cache(db: Database) -> InventoryCache:
    with _CACHES_LOCK:
        cache = _CACHES.get(db)
        if cache is None:
            cache = _CACHES[db] = InventoryCache()
        return cache


@router.get("/", responses={200: {"model": list[ServerOut]}, **_401})
def list_servers(_: Management, res: ResDep) -> Response:
    return _json(inventory_cache(res.db).get(res.db))


@router.get(
    "/kubeconfig",
    responses={
        200: {"model": dict[str, object]},
        502: {"model": Detail},
        503: {"model": Detail},
        **_404,
    },
)
def kubeconfig(_: Kubeconfig, res: ResDep) -> Response:
    """Optional (sync-kubeconfig): a kubeconfig for the configured namespace-scoped service
    account with a fresh token; 404 when none is configured or the account does not exist."""
    s = res.settings
    if not s.kubeconfig_service_account:
        raise HTTPException(404, "kubeconfig is not served by this miner")
    try:
        config = res.kube.service_account_kubeconfig(
            s.kubeconfig_service_account, s.kubeconfig_server, s.kubeconfig_token_ttl_s
        )
    except KubeUnavailable:
        raise HTTPException(503, "kubernetes is not available") from None
    except KubeApiError as exc:  # e.g. 403: our ServiceAccount may not create that token
        log.warning("api.kubeconfig_refused", extra={"error": str(exc)})
        raise HTTPException(exc.answer_status, str(exc)) from None
    if config is None:
        raise HTTPException(404, "kubeconfig service account not found")
    log.info(
        "api.kubeconfig_issued",
        extra={"service_account": s.kubeconfig_service_account, "ttl_s": s.kubeconfig_token_ttl_s},
    )
    return JSONResponse(config, headers={"Cache-Control": "no-store"})


def _set_lock(res: ResDep, id_or_name: str, locked: bool) -> Response:
    ref = _server_or_404(res, id_or_name)
    with res.db.connection() as conn:
        text = queries.set_locked(conn, ref.server_id, locked)
    if text is None:
        raise HTTPException(404, "Node not found")
    return _json(text)


@router.get("/{id_or_name}/lock", responses={200: {"model": ServerOut}, **_404})
def lock(id_or_name: str, _: Management, res: ResDep) -> Response:
    return _set_lock(res, id_or_name, True)


@router.get("/{id_or_name}/unlock", responses={200: {"model": ServerOut}, **_404})
def unlock(id_or_name: str, _: Management, res: ResDep) -> Response:
    return _set_lock(res, id_or_name, False)


@router.get("/{id_or_name}/delete_preflight", responses={200: {"model": PreflightOut}, **_404})
def delete_preflight(id_or_name: str, _: Management, res: ResDep) -> Response:
    ref = _server_or_404(res, id_or_name)
    with res.db.connection() as conn:
        jobs = queries.job_deployments_json(conn, ref.server_id)
    return _json(b'{"jobs":' + jobs + b"}")


@router.delete("/{id_or_name}", responses={200: {"model": DeleteServerOut}, **_404})
def delete_server(id_or_name: str, _: Management, res: ResDep) -> DeleteServerOut:
    ref = _server_or_404(res, id_or_name)
    publish(res, "server_deleted", {"server_id": ref.server_id})
    return DeleteServerOut(
        status="started",
        detail=f"Deletion of server {ref.name} ({ref.server_id}) started; gepetto undeploys first",
    )


@router.delete("/{id_or_name}/deployments", responses={200: {"model": PurgeOut}, **_404})
def purge_server(id_or_name: str, _: Management, res: ResDep) -> Response:
    ref = _server_or_404(res, id_or_name)
    with res.db.connection() as conn:
        ids, items = queries.purge_items_json(conn, server_id=ref.server_id, include_jobs=False)
    if ids:
        publish(
            res, "undeploy_requested", {"deployment_ids": ids, "reason": f"purge server {ref.name}"}
        )
    return _json('{"status": "initiated", "deployments_purged": ' + items + "}")


_ADD_NODE_BODY = {
    "requestBody": {
        "required": True,
        "content": {_JSON: {"schema": AddNodeBody.model_json_schema()}},
    }
}


@router.post(
    "/",
    openapi_extra=_ADD_NODE_BODY,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "progress stream"},
        400: {"model": Detail},
        401: {"model": Detail},
        404: {"model": Detail},
        409: {"model": Detail},
        422: {"model": Detail},
        502: {"model": Detail},
        503: {"model": Detail},
    },
)
async def add_node(request: Request, _: BodyAuth, res: ResDep) -> Response:
    # Body parsed only after authentication (contract §1.3 step 8).
    try:
        body = AddNodeBody.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = json.loads(exc.json(include_url=False, include_input=False))
        return JSONResponse({"detail": errors}, status_code=422)
    req = AddNodeRequest(body.name, body.validator, body.hourly_cost, body.gpu_short_ref)
    try:
        attempt = await run_in_threadpool(res.add_node.prepare, req)
    except AddNodeRefused as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    res.add_node.start(attempt)
    return StreamingResponse(
        _tail(attempt, res.settings.sse_heartbeat_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class BootstrapFailed(Exception):
    """Raised after the failure event so the response ends without its final chunk."""


async def _tail(attempt: Attempt, heartbeat_s: float) -> AsyncIterator[bytes]:
    """Every event of the attempt, and one at least every `heartbeat_s` whatever the bootstrap
    is blocked on (contract §2.4: one per 15 s); ends when the attempt reports its outcome."""
    index = 0
    last = "working"
    while True:
        events, done = await asyncio.to_thread(attempt.progress.wait_from, index, heartbeat_s)
        index += len(events)
        for ts, message in events:
            yield sse_event(ts, message)
            last = message
        if not events and not done:
            yield sse_event(datetime.now(UTC).isoformat(), f"still working: {last}"[:300])
        if done:
            if not attempt.progress.ok:
                raise BootstrapFailed(attempt.request.name)
            return
