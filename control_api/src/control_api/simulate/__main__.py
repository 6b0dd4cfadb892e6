"""`python -m control_api.simulate`: compare strategies offline.

    python -m control_api.simulate --scenario steady \\
        --strategy baseline --strategy control_api.scheduler.strategies.fill \\
        --strategy /etc/gepetto/strategy/strategy.py --seeds 5 --svg compare.svg

Strategies are what GEPETTO_STRATEGY takes (`baseline` or empty = the built-in default, a
module path, a .py file). `--seeds N` runs seeds seed..seed+N-1 and reports medians; the
same seed gives the same result. `--db DSN` runs the claims in a scratch PostgreSQL database
(it is emptied) instead of in memory. `record --out trace.json` writes a scenario from this
miner's fleet (PostgreSQL) and its recent event stream (Redis) to replay.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from control_api.scheduler.strategy import StrategyError, StrategyRunner, load_strategy
from control_api.simulate import report
from control_api.simulate.engine import MemoryStore, Store, simulate
from control_api.simulate.scenario import load

DEFAULT_STRATEGIES = ("baseline", "control_api.scheduler.strategies.fill")


def _label(spec: str) -> str:
    return {"": "baseline", "baseline": "baseline"}.get(
        spec, spec.rsplit(".", 1)[-1].removesuffix("py").rstrip(".") or spec
    )


def compare(
    scenario: str,
    strategies: Sequence[str],
    seeds: Sequence[int],
    config: dict[str, Any] | None = None,
    db: str | None = None,
) -> list[dict[str, Any]]:
    """Median summary per strategy over `seeds` (each seed its own generated scenario)."""
    out = []
    store: Store
    pg = None
    if db:
        from control_api.simulate.pgstore import PgStore

        pg = PgStore(db)
    try:
        for spec in strategies:
            runs = []
            for seed in seeds:
                strategy = load_strategy("" if spec == "baseline" else spec, config or {})
                runner = StrategyRunner(strategy, enforce_timeout=False, name=_label(spec))
                store = pg if pg is not None else MemoryStore()
                result = simulate(
                    load(scenario, seed), runner, store, "postgresql" if pg else "memory"
                )
                runs.append(result.summary())
            out.append(report.median_summary(runs))
    finally:
        if pg is not None:
            pg.close()
    return out


def record_main(argv: Sequence[str]) -> int:
    import os

    from control_api.simulate.record import record

    parser = argparse.ArgumentParser(prog="python -m control_api.simulate record")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--demand", type=float, default=1.0)
    parser.add_argument("--others", type=int, default=1)
    args = parser.parse_args(argv)
    dsn, url = os.environ.get("POSTGRESQL", ""), os.environ.get("REDIS_URL", "")
    if not dsn or not url:
        sys.stderr.write("record needs POSTGRESQL and REDIS_URL (as the scheduler has them)\n")
        return 2
    trace = record(dsn, url, args.hours, args.demand, args.others)
    args.out.write_text(json.dumps(trace, indent=1) + "\n")
    sys.stdout.write(f"{len(trace['events'])} events, {len(trace['servers'])} servers\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["record"]:
        return record_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m control_api.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", action="append", help="steady, bursty or a .json file")
    parser.add_argument("--strategy", action="append", help="baseline, module path or .py file")
    parser.add_argument("--config", default="{}", help="JSON passed to create_strategy")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="run this many seeds, report medians")
    parser.add_argument("--db", help="scratch PostgreSQL DSN (emptied!) instead of memory")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--svg", type=Path, help="write a bar chart here")
    args = parser.parse_args(argv)
    scenarios = args.scenario or ["steady"]
    strategies = args.strategy or list(DEFAULT_STRATEGIES)
    seeds = list(range(args.seed, args.seed + max(1, args.seeds)))
    everything: dict[str, list[dict[str, Any]]] = {}
    try:
        for scenario in scenarios:
            results = compare(scenario, strategies, seeds, json.loads(args.config), args.db)
            everything[scenario] = results
            sys.stdout.write(f"\nscenario {scenario}, seeds {seeds[0]}..{seeds[-1]} (medians)\n")
            sys.stdout.write(report.table(results) + "\n")
            if args.svg:
                path = (
                    args.svg
                    if len(scenarios) == 1
                    else args.svg.with_stem(f"{args.svg.stem}-{scenario}")
                )
                path.write_text(report.svg(results, f"scenario {scenario}"))
    except (StrategyError, ValueError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
