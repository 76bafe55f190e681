"""The figures of one run, computed from what the upstream, the workers and the callers recorded.

All times are ``time.monotonic()`` readings of one machine, so the three records line up.

- the outage: from the upstream's switch to ``stall``/``error`` to its switch back to ``ok``;
- the trip: the moment the ``threshold``-th failure came back to any worker (the earliest any
  breaker, however well shared, could know the upstream is down);
- the minimum possible: the requests that reached the upstream during the outage before the trip,
  plus one half-open trial per open period of one fleet-wide circuit (an open period lasts
  ``open_seconds``; in a stall the trial is then held as long as the upstream holds requests);
- latency: the app's callers' p50 and p99 over the requests sent during the outage, and the p99
  over those sent from the trip to the outage's end (what no breaker can avoid is left out);
- errors: what the callers saw that was not a 200, by kind, over the whole run;
- recovery: from the upstream's return to the start of the final stretch in which every request
  was answered 200 (``None`` if that stretch is shorter than ``STEADY_SECONDS``).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .load import Sample

STEADY_SECONDS = 1.0
"""How long every request must succeed, at the end of a run, for the fleet to count as recovered."""


@dataclass
class RunRecord:
    """Everything recorded in one run of one contender through one scenario."""

    scenario: str
    contender: str
    outage_start: float
    outage_end: float
    run_end: float
    arrivals: list[float]
    failure_returns: list[float]
    samples: list[Sample]


def trip_time(failure_returns: Sequence[float], threshold: int, outage_start: float) -> float | None:
    """When the ``threshold``-th failure of the outage came back to any worker."""
    failures = sorted(t for t in failure_returns if t >= outage_start)
    return failures[threshold - 1] if len(failures) >= threshold else None


def trials_possible(trip: float, outage_end: float, open_seconds: float, hold: float) -> int:
    """Half-open trials one fleet-wide circuit makes after ``trip`` and before the outage ends."""
    count = 0
    sent = trip + open_seconds
    while sent < outage_end:
        count += 1
        sent += hold + open_seconds
    return count


def minimum_possible(record: RunRecord, trip: float | None, open_seconds: float, hold: float) -> int:
    arrivals = sorted(t for t in record.arrivals if record.outage_start <= t < record.outage_end)
    if trip is None:
        return len(arrivals)
    before = bisect.bisect_left(arrivals, trip)
    return before + trials_possible(trip, record.outage_end, open_seconds, hold)


def percentile_ms(seconds: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile, in milliseconds (``None`` for no values)."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1] * 1000, 1)


def recovery_seconds(samples: Sequence[Sample], outage_end: float, run_end: float) -> float | None:
    """From the upstream's return to the start of the final all-200 stretch of sent requests."""
    after = sorted((s for s in samples if s.sent >= outage_end), key=lambda s: s.sent)
    failed = [s.sent for s in after if s.kind != "ok"]
    if not failed:
        return 0.0
    last = failed[-1]
    if run_end - last < STEADY_SECONDS:
        return None
    return round(last - outage_end, 3)


def summarize(record: RunRecord, threshold: int, open_seconds: float, hold: float) -> dict[str, Any]:
    """The contender's entry in the JSON report."""
    trip = trip_time(record.failure_returns, threshold, record.outage_start)
    during = [s.seconds for s in record.samples if record.outage_start <= s.sent < record.outage_end]
    after_trip = (
        [] if trip is None else [s.seconds for s in record.samples if trip <= s.sent < record.outage_end]
    )
    return {
        "upstream_requests_during_outage": sum(
            1 for t in record.arrivals if record.outage_start <= t < record.outage_end
        ),
        "minimum_possible": minimum_possible(record, trip, open_seconds, hold),
        "p50_ms": percentile_ms(during, 50),
        "p99_ms": percentile_ms(during, 99),
        "p99_after_trip_ms": percentile_ms(after_trip, 99),
        "errors": dict(sorted(Counter(s.kind for s in record.samples if s.kind != "ok").items())),
        "recovery_seconds": recovery_seconds(record.samples, record.outage_end, record.run_end),
    }


def rate_series(record: RunRecord, bin_seconds: float) -> tuple[list[float], list[float]]:
    """Requests per second reaching the upstream, per bin, against seconds from the outage's start."""
    origin = record.outage_start
    times = [t - origin for t in record.arrivals]
    return _bins(times, [1.0] * len(times), bin_seconds, lambda values: len(values) / bin_seconds)


def p99_series(record: RunRecord, bin_seconds: float) -> tuple[list[float], list[float]]:
    """The callers' p99 latency (ms) per bin of send time, against seconds from the outage's start."""
    origin = record.outage_start
    times = [s.sent - origin for s in record.samples]
    values = [s.seconds for s in record.samples]
    return _bins(times, values, bin_seconds, lambda v: percentile_ms(v, 99) if v else math.nan)


def _bins(
    times: list[float], values: list[float], width: float, reduce: Callable[[list[float]], float]
) -> tuple[list[float], list[float]]:
    if not times:
        return [], []
    first, last = math.floor(min(times) / width), math.floor(max(times) / width)
    groups: dict[int, list[float]] = {i: [] for i in range(first, last + 1)}
    for t, v in zip(times, values, strict=True):
        groups[math.floor(t / width)].append(v)
    xs = [(i + 0.5) * width for i in groups]
    return xs, [reduce(v) for v in groups.values()]
