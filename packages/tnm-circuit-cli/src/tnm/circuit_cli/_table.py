"""Plain-text rendering of circuit snapshots (the same numbers as the metrics and the HTTP router)."""

from __future__ import annotations

from collections.abc import Sequence

from tnm.circuit import CircuitSnapshot

__all__ = ["render_table"]

HEADERS = ("SERVICE", "STATE", "OPENED BY", "FAILURES", "PROCESSES", "RETRY IN", "LAST FAILURE", "AGE")


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def table_rows(snapshots: Sequence[CircuitSnapshot], now: float) -> list[tuple[str, ...]]:
    """The cells of each circuit's row (without the header), as text."""
    rows: list[tuple[str, ...]] = []
    for snap in snapshots:
        last = snap.last_failure
        if snap.retry_after is None:
            retry = "until reset"
        elif snap.state.value in ("open", "half_open") and snap.retry_after > 0:
            retry = f"{snap.retry_after:.1f}s"
        else:
            retry = "-"
        rows.append(
            (
                snap.service,
                snap.state.value,
                snap.opened_by or "-",
                f"{snap.failures}/{snap.max_failures}" if snap.max_failures else _rate(snap),
                "-" if snap.failing_processes is None else str(snap.failing_processes),
                retry,
                "-" if last is None else str(last["reason"])[:60],
                "-" if last is None else _age(max(0.0, now - float(last["ts"]))),
            )
        )
    return rows


def _rate(snap: CircuitSnapshot) -> str:
    """Failures column of a circuit with rate triggers only: the count and the share of calls."""
    if snap.failure_rate is None:
        return str(snap.failures)
    return f"{snap.failures} ({snap.failure_rate:.0%} of {snap.calls})"


def render_table(snapshots: Sequence[CircuitSnapshot], now: float) -> str:
    """One line per circuit; ``now`` is epoch seconds, for the age of the last failure."""
    rows = [HEADERS, *table_rows(snapshots, now)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
