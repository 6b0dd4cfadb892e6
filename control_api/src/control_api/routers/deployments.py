"""Deployment purge routes (contract §2.2): publish for gepetto, never undeploy here."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from control_api.db import queries
from control_api.deps import Management, ResDep
from control_api.routers.events import publish
from control_api.schemas.api import Detail, PurgeOneOut, PurgeOut

router = APIRouter(prefix="/deployments", tags=["deployments"])


@router.delete("/purge", responses={200: {"model": PurgeOut}, 401: {"model": Detail}})
def purge_all(_: Management, res: ResDep, include_jobs: bool = False) -> Response:
    with res.db.connection() as conn:
        ids, items = queries.purge_items_json(conn, server_id=None, include_jobs=include_jobs)
    if ids:
        publish(res, "undeploy_requested", {"deployment_ids": ids, "reason": "purge all"})
    return Response(
        '{"status": "initiated", "deployments_purged": ' + items + "}",
        media_type="application/json",
    )


@router.delete(
    "/{deployment_id}",
    responses={200: {"model": PurgeOneOut}, 401: {"model": Detail}, 404: {"model": Detail}},
)
def purge_one(deployment_id: str, _: Management, res: ResDep) -> Response:
    with res.db.connection() as conn:
        text = queries.deployment_json(conn, deployment_id)
    if text is None:
        raise HTTPException(404, "Deployment not found")
    publish(
        res, "undeploy_requested", {"deployment_ids": [deployment_id], "reason": "purge deployment"}
    )
    return Response(
        b'{"status":"initiated","deployment_purged":' + text + b"}", media_type="application/json"
    )
