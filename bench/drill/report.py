"""The drill's table, its goals, and its JSON report."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from .config import CONTENDERS, TRIAL_ALLOWANCE, Drill

Results = dict[str, dict[str, dict[str, Any]]]
"""scenario -> contender -> the contender's figures (``measures.summarize``)."""


def machine() -> str:
    """This machine in one line: CPUs, system, Python."""
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} CPUs, {system}, Python {platform.python_version()}"


def load_average() -> str:
    """The load average now (1, 5 and 15 minutes): how busy the machine was around the run."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def table(scenario: str, figures: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"\n{scenario} scenario",
        "| contender | upstream requests during outage | minimum possible | p50 ms | p99 ms "
        "| p99 from the trip ms | errors seen by callers | recovery s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name in CONTENDERS:
        if name not in figures:
            continue
        f = figures[name]
        errors = ", ".join(f"{kind}: {count}" for kind, count in f["errors"].items()) or "none"
        recovery = "not recovered" if f["recovery_seconds"] is None else f"{f['recovery_seconds']:.2f}"
        lines.append(
            f"| {name} | {f['upstream_requests_during_outage']} | {f['minimum_possible']} "
            f"| {_ms(f['p50_ms'])} | {_ms(f['p99_ms'])} | {_ms(f['p99_after_trip_ms'])} "
            f"| {errors} | {recovery} |"
        )
    return lines


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def goals(drill: Drill, results: Results) -> list[tuple[str, bool | None, str]]:
    """Each goal: what it asks, whether this run met it (``None``: not measured), and the figures."""
    out: list[tuple[str, bool | None, str]] = []
    n = drill.workers
    error = results.get("error", {})
    if "tnm-redis" in error:
        redis = error["tnm-redis"]
        got, least = redis["upstream_requests_during_outage"], redis["minimum_possible"]
        out.append(
            ("error: tnm-redis lets at most 1.5x the minimum possible reach the upstream",
             got <= 1.5 * least, f"{got} requests, minimum {least} (ratio {got / max(least, 1):.2f})")
        )  # fmt: skip
        if "tnm-local" in error:
            local = error["tnm-local"]
            local_extra = local["upstream_requests_during_outage"] - local["minimum_possible"]
            redis_extra = max(1, got - least)
            out.append(
                (f"error: (tnm-local - its minimum) >= (N-1) x max(1, tnm-redis - its minimum), N={n}",
                 local_extra >= (n - 1) * redis_extra,
                 f"{local_extra} >= {n - 1} x {redis_extra} = {(n - 1) * redis_extra}")
            )  # fmt: skip
    stall = results.get("stall", {})
    if "tnm-redis" in stall:
        p99 = stall["tnm-redis"]["p99_after_trip_ms"]
        out.append(
            ("stall: tnm-redis p99 from the trip on < 50 ms", p99 is not None and p99 < 50, f"{_ms(p99)} ms")
        )
    if "none" in stall:
        p99 = stall["none"]["p99_ms"]
        out.append(("stall: no breaker p99 >= 1 s", p99 is not None and p99 >= 1000, f"{_ms(p99)} ms"))
    bound = drill.policy.open_seconds + TRIAL_ALLOWANCE
    for scenario, figures in results.items():
        if "tnm-redis" in figures:
            r = figures["tnm-redis"]["recovery_seconds"]
            out.append(
                (f"{scenario}: tnm-redis back to full traffic within open_seconds + one trial ({bound:g} s)",
                 r is not None and r <= bound, "not recovered" if r is None else f"{r:.2f} s")
            )  # fmt: skip
    return out


def goal_lines(drill: Drill, results: Results) -> list[str]:
    lines = ["\ngoals"]
    for what, met, figures in goals(drill, results):
        lines.append(f"  [{'met' if met else 'MISSED'}] {what}: {figures}")
    return lines


def write_json(path: Path, drill: Drill, results: Results, machine_line: str) -> None:
    report = {
        "workers": drill.workers,
        "outage_seconds": drill.outage_seconds,
        "scenarios": {scenario: {"contenders": figures} for scenario, figures in results.items()},
        "rate": drill.rate,
        "policy": {"threshold": drill.policy.threshold, "open_seconds": drill.policy.open_seconds},
        "stall_hold_seconds": drill.stall_hold_seconds,
        "machine": machine_line,
        "goals": [
            {"goal": what, "met": met, "figures": figures} for what, met, figures in goals(drill, results)
        ],
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
