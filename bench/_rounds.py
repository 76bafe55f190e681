"""Interleaved rounds and the ratio table the client benchmarks print.

Each round runs every variant once, in an order that rotates between rounds, so that drift on
a busy machine hits all variants alike; the table shows medians of the rounds, their ratio and
difference, and the widest gap between the two within one round (how much a single round can
mislead).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Awaitable, Callable, Mapping


def order(names: list[str], i: int) -> list[str]:
    """The variants in round ``i``: the list rotated by ``i``."""
    return names[i % len(names) :] + names[: i % len(names)]


def rounds_of(calls: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each variant's time per call in every round."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in order(names, i):
            times[name].append(calls[name]())
    return times


async def async_rounds_of(
    calls: Mapping[str, Callable[[], Awaitable[float]]], rounds: int
) -> dict[str, list[float]]:
    """``rounds_of`` for variants that are awaited."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in order(names, i):
            times[name].append(await calls[name]())
    return times


def header(first: str, unit: str) -> None:
    """The table's heading: ``first`` names the column of labels, ``unit`` what one call is."""
    print(f"| {first} | bare µs/{unit} | tnm µs/{unit} | tnm / bare | added µs | widest gap in one round |")
    print("| --- | --- | --- | --- | --- | --- |")


def report(label: str, times: dict[str, list[float]]) -> None:
    """One table row comparing ``times["tnm"]`` with ``times["bare"]``."""
    bare, tnm = (statistics.median(times[name]) for name in ("bare", "tnm"))
    spread = max(abs(a / b - 1) for a, b in zip(times["tnm"], times["bare"], strict=True))
    print(
        f"| {label} | {bare * 1e6:.1f} | {tnm * 1e6:.1f} | {tnm / bare:.3f}x | {(tnm - bare) * 1e6:+.1f} "
        f"| {spread * 100:.1f}% |"
    )


def load_average(when: str) -> None:
    """Print the one-minute load average, to show how busy the machine was."""
    print(f"load average at {when}: {os.getloadavg()[0]:.1f}")


def alone_header(title: str, base: str, wrapped: str) -> None:
    """The heading of the table of the adapter's own cost, measured around a stub (ns per call)."""
    print(f"\n{title}")
    print(f"| path | {base} ns | {wrapped} ns | added ns |")
    print("| --- | --- | --- | --- |")


def alone_row(label: str, base: float, cost: float) -> None:
    """One row of that table: the stub alone, with the adapter, and the difference."""
    print(f"| {label} | {base * 1e9:.0f} | {cost * 1e9:.0f} | {(cost - base) * 1e9:+.0f} |")


def report_with_baseline(label: str, baseline: str, times: dict[str, list[float]]) -> None:
    """Three rows: the breaker against the bare client, the client's own extension point with
    nothing in it (``times["noop"]``) against the bare client, and the breaker against that."""
    report(label, times)
    report(f"{label}, {baseline}", {"bare": times["bare"], "tnm": times["noop"]})
    report(f"the breaker against {baseline}", {"bare": times["noop"], "tnm": times["tnm"]})
