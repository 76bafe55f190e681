"""The drill's figures: the trip, the minimum possible, percentiles and recovery, on made-up records."""

from __future__ import annotations

from bench.drill.load import Sample
from bench.drill.measures import (
    RunRecord,
    minimum_possible,
    percentile_ms,
    recovery_seconds,
    summarize,
    trials_possible,
    trip_time,
)


def record(**fields: object) -> RunRecord:
    base: dict[str, object] = {
        "scenario": "error",
        "contender": "tnm-redis",
        "outage_start": 10.0,
        "outage_end": 20.0,
        "run_end": 25.0,
        "arrivals": [],
        "failure_returns": [],
        "samples": [],
    }
    return RunRecord(**{**base, **fields})  # type: ignore[arg-type]


class TestTrip:
    def test_threshold_th_failure_of_the_outage(self) -> None:
        """The trip is the threshold-th failure to come back to any worker, counted from the outage."""
        assert trip_time([9.0, 10.3, 10.1, 10.2], threshold=3, outage_start=10.0) == 10.3

    def test_no_trip_without_enough_failures(self) -> None:
        """Fewer failures than the threshold: no breaker could have tripped."""
        assert trip_time([10.1, 10.2], threshold=3, outage_start=10.0) is None


class TestMinimumPossible:
    def test_one_trial_per_open_period(self) -> None:
        """An instant failure: a trial every open period until the outage ends."""
        assert trials_possible(trip=10.0, outage_end=20.0, open_seconds=2.0, hold=0.0) == 4  # 12 14 16 18

    def test_a_stalled_trial_lengthens_the_period(self) -> None:
        """In a stall each trial is held before it fails, so the next one comes later."""
        assert trials_possible(trip=11.0, outage_end=20.0, open_seconds=2.0, hold=1.0) == 3  # 13 16 19

    def test_requests_before_the_trip_plus_trials(self) -> None:
        """Arrivals during the outage up to the trip count, then the trials; warm-up arrivals do not."""
        rec = record(arrivals=[9.5, 10.0, 10.01, 10.02, 10.05, 12.0, 14.0])
        assert minimum_possible(rec, trip=10.03, open_seconds=5.0, hold=0.0) == 3 + 1


class TestLatencyAndRecovery:
    def test_nearest_rank_percentile(self) -> None:
        """p99 of 100 values is the 99th smallest, in milliseconds."""
        assert percentile_ms([i / 1000 for i in range(1, 101)], 99) == 99.0
        assert percentile_ms([], 99) is None

    def test_recovery_is_the_start_of_the_all_ok_stretch(self) -> None:
        """Recovery ends at the last failed request sent after the upstream's return."""
        samples = [Sample(20.5, 0.001, "503"), Sample(21.2, 0.001, "503"), Sample(21.3, 0.001, "ok")]
        assert recovery_seconds(samples, outage_end=20.0, run_end=25.0) == 1.2

    def test_not_recovered_when_failures_reach_the_end(self) -> None:
        """A failure in the run's last second means the fleet was not seen back at full traffic."""
        samples = [Sample(24.5, 0.001, "503")]
        assert recovery_seconds(samples, outage_end=20.0, run_end=25.0) is None

    def test_summary_counts_errors_by_kind_and_latency_from_the_trip(self) -> None:
        """Errors are counted by kind; the p99 from the trip leaves out requests sent before it."""
        samples = [Sample(10.0, 1.0, "503"), Sample(10.5, 0.002, "503"), Sample(11.0, 0.003, "timeout")]
        rec = record(samples=samples, failure_returns=[10.2], arrivals=[10.0, 10.1])
        figures = summarize(rec, threshold=1, open_seconds=5.0, hold=0.0)
        assert figures["errors"] == {"503": 2, "timeout": 1}
        assert figures["p99_ms"] == 1000.0
        assert figures["p99_after_trip_ms"] == 3.0
        assert figures["upstream_requests_during_outage"] == 2
        assert figures["minimum_possible"] == 2 + 1  # trial at 15.2
