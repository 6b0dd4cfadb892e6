"""Entry point: validate env, open the GPUs, then serve. Any start-up failure exits non-zero
before the port opens, so add-node sees a failed pod instead of an open, unguarded server."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping

import uvicorn

from graval_bootstrap.app import create_app
from graval_bootstrap.config import DEFAULT_TERMINATION_LOG, ConfigError, Settings
from graval_bootstrap.gpu import BackendError, DeviceBackend, open_graval_backend
from graval_bootstrap.standin import open_stand_in_backend

log = logging.getLogger("graval_bootstrap")

EXIT_CONFIG = 2
EXIT_GPU = 3


def fail(message: str, code: int, termination_log: str) -> int:
    """Log one line, leave it in the Kubernetes termination log if writable, return `code`."""
    log.error("start-up failed: %s", message)
    try:
        with open(termination_log, "w", encoding="utf-8") as handle:
            handle.write(message + "\n")
    except OSError:
        pass  # not in a pod, or a read-only path: the log line is enough
    return code


def run(
    env: Mapping[str, str],
    *,
    open_backend: Callable[[int], DeviceBackend] = open_graval_backend,
    serve: Callable[..., None] = uvicorn.run,
) -> int:
    """Start the bootstrap; return the exit code (0 after a clean shutdown)."""
    termination_log = env.get("TERMINATION_LOG_PATH", DEFAULT_TERMINATION_LOG)
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG, termination_log)
    if settings.stand_in:  # the lab: no GPU; the log line names the stand-in
        open_backend = open_stand_in_backend
    try:
        backend = open_backend(settings.expected_gpu_count)
    except BackendError as exc:
        return fail(str(exc), EXIT_GPU, termination_log)
    app = create_app(settings, backend)
    log.info(
        "serving on %s:%d, %d devices, %d whitelisted validators",
        settings.host,
        settings.port,
        len(backend.uuids),
        len(settings.validator_whitelist),
    )
    # access_log off: uvicorn's line carries the query string; AccessLog logs the path only.
    serve(app, host=settings.host, port=settings.port, access_log=False, log_config=None)
    return 0


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # httpx logs each request URL at INFO; the /remote_token URL comes from a request body.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sys.exit(run(os.environ))


if __name__ == "__main__":
    main()
