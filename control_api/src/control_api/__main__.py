"""Entry point: `python -m control_api [api|migrate|registry-auth|relay]`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from pydantic import ValidationError

from control_api.config import Settings, describe_error
from control_api.log import setup_logging

log = logging.getLogger("control_api")


def _settings() -> Settings:
    try:
        return Settings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as exc:
        sys.stderr.write(describe_error(exc) + "\n")
        raise SystemExit(2) from None
    except ValueError as exc:  # VALIDATORS that is not JSON
        sys.stderr.write(f"invalid configuration: {exc}\n")
        raise SystemExit(2) from None


def run_api(settings: Settings) -> None:
    import uvicorn
    from prometheus_client import start_http_server

    from control_api.db.migrate import migrate
    from control_api.main import create_app

    if os.environ.get("CONTROL_API_MIGRATE", "true").lower() != "false":
        migrate(settings.postgresql.get_secret_value())
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    # One worker per pod: uvicorn's pre-bound multi-worker socket loses TCP_NODELAY.
    uvicorn.run(
        create_app(settings),
        host=os.environ.get("API_HOST", "0.0.0.0"),
        port=settings.api_port,
        access_log=False,
        log_config=None,
        loop="auto",
        http="auto",
    )


async def _registry_auth(settings: Settings) -> None:
    from control_api.registry_auth import serve
    from control_api.services.signing import keypair_from_seed

    signer = keypair_from_seed(settings.miner_seed.get_secret_value())
    server = await serve(
        signer,
        settings.registry_auth_token.get_secret_value(),
        os.environ.get("REGISTRY_AUTH_HOST", "0.0.0.0"),
        settings.registry_auth_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


async def _relay(settings: Settings) -> None:
    from control_api.relay.client import serve

    stop = asyncio.Event()  # SIGTERM: close the sockets and release the leases
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


def main() -> None:
    if sys.argv[1:2] == ["scheduler"]:  # gepetto: its own settings and subcommands
        from control_api.scheduler.__main__ import main as scheduler_main

        scheduler_main(sys.argv[2:])
        return
    setup_logging(os.environ.get("LOG_LEVEL", "INFO"))
    command = sys.argv[1] if len(sys.argv) > 1 else "api"
    settings = _settings()
    if command == "api":
        run_api(settings)
    elif command == "migrate":
        from control_api.db.migrate import migrate

        migrate(settings.postgresql.get_secret_value())
    elif command == "registry-auth":
        _run_async(_registry_auth(settings))
    elif command == "relay":
        _run_async(_relay(settings))
    else:
        sys.stderr.write(f"unknown command {command!r}: api | migrate | registry-auth | relay\n")
        raise SystemExit(2)


def _run_async(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
