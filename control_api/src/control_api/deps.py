"""Request dependencies: resources from app.state, and D1 authentication (contract §1.3)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated

import redis.exceptions
from fastapi import Depends, HTTPException, Request

from control_api.clients.events import EventPublisher, RedisReplayStore
from control_api.clients.k8s import KubeClient
from control_api.core.config import Settings
from control_api.core.signing import body_hash
from control_api.db.pool import Database
from control_api.metrics import AUTH_FAILURES
from control_api.services.auth import HEADERS, AuthError, Verified, authenticate
from control_api.services.bootstrap import AddNodeService

log = logging.getLogger(__name__)
UNAUTHORIZED = HTTPException(401, "unauthorized")


@dataclass
class Resources:
    settings: Settings
    db: Database
    replay: RedisReplayStore
    events: EventPublisher
    add_node: AddNodeService
    kube: KubeClient


def get_resources(request: Request) -> Resources:
    res: Resources = request.app.state.res
    return res


ResDep = Annotated[Resources, Depends(get_resources)]


def _single_headers(request: Request) -> dict[str, str]:
    """The D1 headers, each given at most once: a repeated one (even with the same value) is
    ambiguous, since a proxy and this service might each read a different copy."""
    values = {}
    for name in HEADERS:
        given = request.headers.getlist(name)
        if len(given) > 1:
            raise AuthError("duplicate header")
        values[name] = given[0] if given else ""
    return values


async def _auth(request: Request, res: Resources, x: str) -> Verified:
    try:
        return await authenticate(
            _single_headers(request),
            x=x,
            miner_ss58=res.settings.miner_ss58,
            allowed_signers=frozenset({res.settings.miner_ss58}),
            now=int(time.time()),
            replay=res.replay,
        )
    except AuthError as exc:
        AUTH_FAILURES.labels(reason=exc.reason).inc()
        log.info("auth.rejected", extra={"reason": exc.reason, "path": request.url.path})
        raise UNAUTHORIZED from None
    except redis.exceptions.RedisError:
        log.warning("auth.replay_cache_unavailable")
        raise HTTPException(503, "replay cache unavailable") from None


def purpose(x: str) -> object:
    async def dep(request: Request, res: ResDep) -> Verified:
        return await _auth(request, res, x)

    return Depends(dep)


async def body_auth(request: Request, res: ResDep) -> Verified:
    return await _auth(request, res, body_hash(await request.body()))


Management = Annotated[Verified, purpose("management")]
Kubeconfig = Annotated[Verified, purpose("kubeconfig")]
BodyAuth = Annotated[Verified, Depends(body_auth)]
