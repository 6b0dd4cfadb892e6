"""Scenarios for the simulator: a fleet of servers and a timed list of events.

A scenario file (JSON) either lists `events` itself (a recorded trace, see `record`) or
describes a synthetic workload the generator expands, deterministically for a seed:

    {"name": "...", "duration_h": 24, "price_per_unit_hour": 0.6,
     "servers": [{"count": 6, "model": "h100", "gpus": 8, "hourly_cost": 1.8}, ...],
     "chutes": {"count": 40, "gpu_counts": {"1": 4, "2": 3, "4": 2, "8": 1},
                "models": [["h100", "h200"], ["h200"]], "multiplier": [0.5, 4.0],
                "demand": [0, 6], "others": [0, 4], "arrival_h": [0, 2],
                "demand_changes_per_day": 4},
     "bounties": {"count": 20, "amount": [1, 20]},
     "jobs": {"count": 60, "multiplier": [1, 8],
              "duration_h": [0.25, 2], "exclude_share": 0.05},
     "startup_s": [120, 600], "competitor_delay_s": [300, 1800]}

`gpu_counts` values are relative weights. Demand is in instances' worth of work: a chute
with demand 3 keeps three instances busy. `others` is how many instances other miners run.
Event times are seconds from the start.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIM_VALIDATOR = "5SimulatedValidator"
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


@dataclass(frozen=True)
class ServerSpec:
    server_id: str
    model: str
    gpus: int
    hourly_cost: float


@dataclass(frozen=True)
class SimEvent:
    t: float
    kind: str  # chute_created, demand, bounty_change, job_created
    data: dict[str, Any]


@dataclass
class Scenario:
    name: str
    duration_s: float
    price_per_unit_hour: float
    servers: list[ServerSpec]
    events: list[SimEvent]
    startup_s: tuple[float, float] = (120.0, 600.0)
    competitor_delay_s: tuple[float, float] = (300.0, 1800.0)
    description: str = ""
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _weighted(rng: random.Random, weights: dict[str, float]) -> int:
    keys = sorted(weights, key=int)
    return int(rng.choices(keys, [weights[k] for k in keys])[0])


def _pair(value: Any) -> tuple[float, float]:
    lo, hi = value
    return float(lo), float(hi)


def _servers(spec: list[dict[str, Any]]) -> list[ServerSpec]:
    out: list[ServerSpec] = []
    for group in spec:
        for _ in range(int(group.get("count", 1))):
            out.append(
                ServerSpec(
                    f"{group['model']}-{len(out):03d}",
                    str(group["model"]),
                    int(group["gpus"]),
                    float(group["hourly_cost"]),
                )
            )
    return out


def generate(spec: dict[str, Any], seed: int) -> Scenario:
    """Expand a synthetic scenario description; same spec and seed, same events."""
    rng = random.Random(seed)
    duration = float(spec.get("duration_h", 24)) * 3600
    events: list[SimEvent] = []
    c = spec.get("chutes", {})
    chute_ids = []
    sizes: dict[str, int] = {}
    for i in range(int(c.get("count", 20))):
        cid = f"chute-{i:03d}"
        chute_ids.append(cid)
        models = rng.choice(c.get("models", [["h200"]]))
        size = _weighted(rng, c.get("gpu_counts", {"1": 1}))
        data: dict[str, Any] = {
            "chute_id": cid,
            "gpu_count": size,
            "supported_gpus": list(models),
            "multiplier": round(rng.uniform(*c.get("multiplier", [1.0, 1.0])), 3),
        }
        t = rng.uniform(*c.get("arrival_h", [0, 0])) * 3600
        sizes[cid] = size
        events.append(SimEvent(t, "chute_created", data))
        changes = int(c.get("demand_changes_per_day", 4) * duration / 86400) + 1
        times = sorted([t] + [rng.uniform(t, duration) for _ in range(changes - 1)])
        for when in times:
            demand = round(rng.uniform(*c.get("demand", [0, 4])), 2)
            lo, hi = c.get("others", [0, 3])
            others = rng.randint(int(lo), int(hi))
            events.append(
                SimEvent(when, "demand", {"chute_id": cid, "demand": demand, "others": others})
            )
    b = spec.get("bounties", {})
    for _ in range(int(b.get("count", 0))):
        cid = rng.choice(chute_ids)
        t = rng.uniform(0, duration * 0.9)
        amount = round(rng.uniform(*b.get("amount", [1, 10])), 2)
        events.append(SimEvent(t, "bounty_change", {"chute_id": cid, "bounty": amount}))
    j = spec.get("jobs", {})
    for n in range(int(j.get("count", 0))):
        cid = rng.choice(chute_ids)
        data = {
            "job_id": f"job-{n:04d}",
            "chute_id": cid,
            "gpu_count": sizes[cid],  # a job runs its chute's node selector
            "compute_multiplier": round(rng.uniform(*j.get("multiplier", [1, 4])), 3),
            "duration_s": round(rng.uniform(*j.get("duration_h", [0.25, 1])) * 3600),
            "exclude": ["5us"] if rng.random() < float(j.get("exclude_share", 0.0)) else [],
        }
        events.append(SimEvent(rng.uniform(0, duration * 0.95), "job_created", data))
    events.sort(key=lambda e: (e.t, e.kind, json.dumps(e.data, sort_keys=True)))
    return Scenario(
        name=str(spec.get("name", "synthetic")),
        description=str(spec.get("description", "")),
        duration_s=duration,
        price_per_unit_hour=float(spec.get("price_per_unit_hour", 0.5)),
        servers=_servers(spec.get("servers", [])),
        events=events,
        startup_s=_pair(spec.get("startup_s", (120, 600))),
        competitor_delay_s=_pair(spec.get("competitor_delay_s", (300, 1800))),
        seed=seed,
    )


def load(name_or_path: str, seed: int) -> Scenario:
    """A shipped scenario by name (`steady`, `bursty`) or a JSON file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.json"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.json")))
        raise ValueError(f"no scenario {name_or_path!r} (shipped: {shipped}; or a .json path)")
    spec = json.loads(path.read_text())
    if "events" not in spec:
        return generate(spec, seed)
    duration = float(spec.get("duration_h", 0)) * 3600 or max(
        (float(e["t"]) for e in spec["events"]), default=0.0
    )
    return Scenario(
        name=str(spec.get("name", path.stem)),
        description=str(spec.get("description", "recorded")),
        duration_s=duration,
        price_per_unit_hour=float(spec.get("price_per_unit_hour", 0.5)),
        servers=_servers(spec.get("servers", [])),
        events=[SimEvent(float(e["t"]), e["kind"], e["data"]) for e in spec["events"]],
        seed=seed,
    )
