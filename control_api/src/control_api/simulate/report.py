"""Side-by-side results: a text table for the terminal and an SVG bar chart (no plotting
library: plain SVG text, opens in any browser)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from html import escape
from typing import Any

ROWS = (
    ("utilisation_pct", "GPU utilisation %", True),
    ("gpu_hours_used", "GPU-hours used", True),
    ("gpu_hours_busy", "GPU-hours active", True),
    ("earnings_usd", "estimated earnings $", True),
    ("of_which_jobs_usd", "  of which jobs $", True),
    ("of_which_bounties_usd", "  of which bounties $", True),
    ("server_cost_usd", "server cost $", False),
    ("net_usd", "net $", True),
    ("bounties_won", "bounties won", True),
    ("jobs_run", "jobs run", True),
    ("preemptions", "preemptions", False),
    ("deployments", "deployments", None),
    ("deploy_latency_p50_s", "deploy latency p50 s", False),
    ("deploy_latency_p95_s", "deploy latency p95 s", False),
    ("hook_failures", "strategy hook failures", False),
)


def median_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per field, the median over runs (seeds); "a/b" fields by their numerators."""
    out: dict[str, Any] = {k: runs[0][k] for k in ("strategy", "scenario", "store")}
    out["seeds"] = [r["seed"] for r in runs]
    for key, _, _ in ROWS:
        values = [r[key] for r in runs if r[key] is not None]
        if not values:
            out[key] = None
        elif isinstance(values[0], str):
            won = statistics.median(int(v.split("/")[0]) for v in values)
            of = statistics.median(int(v.split("/")[1]) for v in values)
            out[key] = f"{won:g}/{of:g}"
        else:
            out[key] = round(statistics.median(values), 2)
    return out


def table(results: Sequence[dict[str, Any]]) -> str:
    names = [r["strategy"] for r in results]
    width = max(12, *(len(n) for n in names))
    lines = [f"{'':<26}" + "".join(f"{n:>{width + 2}}" for n in names)]
    for key, label, _ in ROWS:
        cells = []
        for r in results:
            v = r.get(key)
            cells.append(f"{'-' if v is None else v:>{width + 2}}")
        lines.append(f"{label:<26}" + "".join(cells))
    return "\n".join(lines)


def _number(v: Any) -> float:
    if v is None:
        return 0.0
    if isinstance(v, str):
        return float(v.split("/")[0])
    return float(v)


def svg(results: Sequence[dict[str, Any]], title: str) -> str:
    """Grouped bars, one group per measure, each bar scaled to that measure's largest value;
    the better bar of each group is drawn darker (higher or lower is better per measure)."""
    palette = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2"]
    rows = [r for r in ROWS if r[2] is not None]
    group_h, bar_h, left, width = 18 * len(results) + 14, 16, 210, 420
    height = 60 + group_h * len(rows)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}"'
        ' font-family="sans-serif" font-size="12">',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for i, r in enumerate(results):
        out.append(
            f'<rect x="{left + 150 * i}" y="32" width="12" height="12" fill="{palette[i % 5]}"/>'
            f'<text x="{left + 16 + 150 * i}" y="43">{escape(str(r["strategy"]))}</text>'
        )
    y = 56
    for key, label, higher_better in rows:
        values = [_number(r.get(key)) for r in results]
        top = max(values) or 1.0
        best = max(values) if higher_better else min(values)
        out.append(f'<text x="10" y="{y + 12}">{escape(label.strip())}</text>')
        for i, (r, v) in enumerate(zip(results, values, strict=True)):
            w = max(1.0, width * v / top)
            opacity = "1" if v == best else "0.55"
            by = y + i * (bar_h + 2)
            out.append(
                f'<rect x="{left}" y="{by}" width="{w:.1f}" height="{bar_h}"'
                f' fill="{palette[i % 5]}" fill-opacity="{opacity}"/>'
                f'<text x="{left + w + 4:.1f}" y="{by + 12}">{escape(str(r.get(key)))}</text>'
            )
        y += group_h
    out.append("</svg>")
    return "\n".join(out)
