"""Entry point: `python -m control_api [api|migrate|registry-auth|relay]`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from pydantic import ValidationError

from control_api.core.config import Settings, describe_error, settings_help
from control_api.log import setup_logging

log = logging.getLogger("control_api")
COMMANDS = {
    "api": "the miner API on API_HOST:API_PORT (migrates first unless CONTROL_API_MIGRATE=false)",
    "migrate": "apply the SQL migrations and exit (advisory-locked)",
    "registry-auth": "the internal registry-auth listener on REGISTRY_AUTH_HOST:_PORT",
    "relay": "one socket.io client per validator, events into Redis",
    "scheduler": "gepetto, chute placement (its own settings: scheduler --help)",
}


def usage() -> str:
    commands = "\n".join(f"  {name:<14} {text}" for name, text in COMMANDS.items())
    return (
        "usage: python -m control_api [COMMAND]   (default: api)\n\n"
        f"commands:\n{commands}\n\n"
        "settings (environment variables, case-insensitive):\n"
        f"{settings_help()}\n"
    )


def _settings() -> Settings:
    try:
        return Settings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as exc:
        sys.stderr.write(describe_error(exc) + "\n")
        raise SystemExit(2) from None
    except ValueError as exc:  # VALIDATORS that is not JSON
        sys.stderr.write(f"invalid configuration: {exc}\n")
        raise SystemExit(2) from None


def _start_metrics(settings: Settings, bind_host: str) -> None:
    """Prometheus on its own port, served from a thread (never the serving event loop), each
    connection's reads bounded by HEADER_TIMEOUT_S (control_api/metrics_server.py)."""
    from control_api import metrics_server

    if settings.metrics_port:
        host = settings.metrics_host or bind_host
        metrics_server.start(host, settings.metrics_port, settings.header_timeout_s)


def run_api(settings: Settings) -> None:
    import uvicorn

    from control_api.clients.k8s import UnavailableKube
    from control_api.db.migrate import migrate
    from control_api.guard import raise_nofile_limit, uvicorn_config
    from control_api.main import create_app, real_kube

    kube = real_kube(settings.chutes_namespace)
    if kube is None and settings.kubernetes_required:
        sys.stderr.write(
            "no Kubernetes configuration (in-cluster or KUBECONFIG); set"
            " KUBERNETES_REQUIRED=false to serve without add-node\n"
        )
        raise SystemExit(2)
    if os.environ.get("CONTROL_API_MIGRATE", "true").lower() != "false":
        migrate(settings.postgresql.get_secret_value())
    raise_nofile_limit()
    _start_metrics(settings, settings.api_host)
    # One worker per pod: uvicorn's pre-bound multi-worker socket loses TCP_NODELAY.
    app = create_app(settings, kube=kube or UnavailableKube())
    uvicorn.Server(uvicorn_config(app, settings, settings.api_host, settings.api_port)).run()


async def _registry_auth(settings: Settings) -> None:
    from control_api.core.signing import keypair_from_seed
    from control_api.guard import raise_nofile_limit
    from control_api.registry_auth import Limits, serve

    nofile = raise_nofile_limit()
    signer = keypair_from_seed(settings.miner_seed.get_secret_value())
    _start_metrics(settings, settings.registry_auth_host)
    server = await serve(
        signer,
        settings.registry_auth_token.get_secret_value(),
        settings.registry_auth_host,
        settings.registry_auth_port,
        limits=Limits(
            max_head_bytes=settings.max_head_bytes,
            header_timeout_s=settings.header_timeout_s,
            idle_timeout_s=settings.registry_auth_idle_timeout_s,
            # keep descriptors for the metrics server, logging and the loop itself
            max_connections=settings.registry_auth_max_connections or max(64, nofile - 64),
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


async def _relay(settings: Settings) -> None:
    from control_api.relay.client import serve

    _start_metrics(settings, "0.0.0.0")  # noqa: S104 - a pod's probes and Prometheus reach it
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
    command = sys.argv[1] if len(sys.argv) > 1 else "api"
    if command in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return
    if command not in COMMANDS:
        sys.stderr.write(f"unknown command {command!r}: {' | '.join(COMMANDS)} | --help\n")
        raise SystemExit(2)
    setup_logging(os.environ.get("LOG_LEVEL", "INFO"))
    settings = _settings()
    if command == "api":
        run_api(settings)
    elif command == "migrate":
        from control_api.db.migrate import migrate

        migrate(settings.postgresql.get_secret_value())
    elif command == "registry-auth":
        _run_async(_registry_auth(settings))
    else:
        _run_async(_relay(settings))


def _run_async(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
