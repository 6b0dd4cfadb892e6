"""One JSON formatter on stdout; stable dotted event names with fields."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_SECRET_KEYS = {"seed", "miner_seed", "token", "password", "dsn", "signature", "authorization"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STD or key.startswith("_"):
                continue
            out[key] = "<redacted>" if key.lower() in _SECRET_KEYS else value
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO: the scheduler's validator polls (three every 15 s)
    # would drown the events. Shown again with LOG_LEVEL=DEBUG.
    debug = root.getEffectiveLevel() <= logging.DEBUG
    logging.getLogger("httpx").setLevel(logging.NOTSET if debug else logging.WARNING)
