"""Publishing for gepetto from a route (contract §5): purges and deletes only publish."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from fastapi import HTTPException

from control_api.deps import Resources
from control_api.metrics import EVENTS

log = logging.getLogger(__name__)


def publish(res: Resources, event_type: str, event_data: dict[str, Any]) -> None:
    """Redis down answers 503 (like the replay cache), never 500; nothing was changed."""
    try:
        res.events.publish(event_type, event_data)
    except redis.exceptions.RedisError:
        log.warning("api.publish_failed", extra={"event_type": event_type})
        raise HTTPException(503, "event bus unavailable") from None
    EVENTS.labels(event_type=event_type).inc()
