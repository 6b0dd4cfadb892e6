"""`python -m control_api scheduler [run | check-strategy FILE | parked | requeue ID]`
(also `python -m control_api.scheduler ...`)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from control_api.__main__ import _run_async, _start_metrics
from control_api.core.config import describe_error
from control_api.log import setup_logging
from control_api.scheduler.config import SchedulerSettings
from control_api.scheduler.strategy import StrategyError

log = logging.getLogger("control_api.scheduler")
USAGE = "usage: scheduler [run | check-strategy FILE | parked | requeue ID]\n"


def _settings() -> SchedulerSettings:
    try:
        return SchedulerSettings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as exc:
        sys.stderr.write(describe_error(exc) + "\n")
        raise SystemExit(2) from None
    except ValueError as exc:
        sys.stderr.write(f"invalid configuration: {exc}\n")
        raise SystemExit(2) from None


async def _run(settings: SchedulerSettings, strategy: object) -> None:
    from control_api.scheduler.service import serve

    # Prometheus on METRICS_PORT (0 = off): its Deployment's probes and Prometheus reach it.
    _start_metrics(settings, "0.0.0.0")  # noqa: S104 - a pod's probes come from outside it
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop, strategy=strategy)


def check_strategy(path: str, config: dict[str, object]) -> int:
    """Load the strategy and call every hook once on a small synthetic snapshot."""
    from control_api.scheduler.check import exercise

    try:
        lines = exercise(path, config)
    except StrategyError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if lines[-1].startswith("FAILED") else 0


async def _parked(settings: SchedulerSettings, args: Sequence[str]) -> int:
    import redis.asyncio as aioredis

    from control_api.scheduler.stream import list_parked, requeue

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        if args and args[0] == "requeue":
            if len(args) != 2:
                sys.stderr.write(USAGE)
                return 2
            ok = await requeue(client, args[1], maxlen=settings.event_stream_maxlen)
            sys.stdout.write(("requeued " if ok else "no parked event ") + args[1] + "\n")
            return 0 if ok else 1
        for row in await list_parked(client):
            sys.stdout.write(json.dumps(row) + "\n")
        return 0
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging(os.environ.get("LOG_LEVEL", "INFO"))
    command = args[0] if args else "run"
    if command == "check-strategy":
        if len(args) != 2:
            sys.stderr.write(USAGE)
            raise SystemExit(2)
        config = json.loads(os.environ.get("GEPETTO_STRATEGY_CONFIG", "") or "{}")
        raise SystemExit(check_strategy(args[1], config))
    settings = _settings()
    if command == "run":
        try:
            from control_api.scheduler.strategy import load_strategy

            strategy = load_strategy(settings.gepetto_strategy, settings.gepetto_strategy_config)
        except StrategyError as exc:  # before any connection: a broken file never half-runs
            sys.stderr.write(f"{exc}\n")
            raise SystemExit(3) from None
        _run_async(_run(settings, strategy))
    elif command in ("parked", "requeue"):
        raise SystemExit(asyncio.run(_parked(settings, args)))
    else:
        sys.stderr.write(f"unknown command {command!r}\n{USAGE}")
        raise SystemExit(2)


if __name__ == "__main__":
    main()
