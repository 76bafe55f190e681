"""The drill's goals are judged from the figures of one run, met or missed as the figures say."""

from __future__ import annotations

from typing import Any

from bench.drill.config import Drill, Policy
from bench.drill.report import goals


def figures(
    requests: int, minimum: int, p99: float = 5.0, after_trip: float = 5.0, recovery: float | None = 0.1
) -> dict[str, Any]:
    return {
        "upstream_requests_during_outage": requests,
        "minimum_possible": minimum,
        "p50_ms": 1.0,
        "p99_ms": p99,
        "p99_after_trip_ms": after_trip,
        "errors": {},
        "recovery_seconds": recovery,
    }


DRILL = Drill(workers=4, policy=Policy(threshold=5, open_seconds=5.0))


def verdicts(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, bool | None]:
    return {what: met for what, met, _ in goals(DRILL, results)}


class TestGoals:
    def test_all_met(self) -> None:
        """A run within every bound meets every goal."""
        results = {
            "error": {"tnm-redis": figures(10, 8), "tnm-local": figures(40, 8)},
            "stall": {
                "tnm-redis": figures(210, 205, after_trip=20.0),
                "none": figures(4000, 205, p99=1010.0),
            },
        }
        assert all(verdicts(results).values())
        assert len(verdicts(results)) == 6

    def test_shared_breaker_over_one_and_a_half_times_the_minimum(self) -> None:
        """13 requests against a minimum of 8 is more than 1.5x: missed."""
        results = {"error": {"tnm-redis": figures(13, 8), "tnm-local": figures(40, 8)}}
        met = verdicts(results)
        assert met["error: tnm-redis lets at most 1.5x the minimum possible reach the upstream"] is False

    def test_local_excess_compared_with_n_minus_one_times_the_shared_one(self) -> None:
        """tnm-local's excess must be at least (N-1) times tnm-redis's (at least 1)."""
        key = "error: (tnm-local - its minimum) >= (N-1) x max(1, tnm-redis - its minimum), N=4"
        assert verdicts({"error": {"tnm-redis": figures(8, 8), "tnm-local": figures(11, 8)}})[key] is True
        assert verdicts({"error": {"tnm-redis": figures(10, 8), "tnm-local": figures(13, 8)}})[key] is False

    def test_stall_latency_and_recovery_bounds(self) -> None:
        """p99 from the trip of 50 ms, no breaker under 1 s, or no recovery: each is missed."""
        results = {
            "stall": {
                "tnm-redis": figures(210, 205, after_trip=50.0, recovery=None),
                "none": figures(4000, 205, p99=999.0),
            }
        }
        assert set(verdicts(results).values()) == {False}
