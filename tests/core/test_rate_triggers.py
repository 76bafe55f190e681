"""Failure-rate and slow-call triggers, observe mode and disable, on the local backend."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, EventKind, ServicePolicy
from tnm.circuit.state import CircuitModel
from tnm.circuit.testing import ManualClock, capture_events

MakeBreaker = Callable[..., CircuitBreaker]
RATE = {"max_failures": None, "failure_rate_threshold": 0.5, "minimum_calls": 10, "window_seconds": 60}


def boom() -> None:
    raise OSError("down")


def run(breaker: CircuitBreaker, pattern: str, service: str = "svc") -> None:
    """``S`` a success, ``F`` a failure, through ``execute``."""
    for step in pattern:
        if step == "S":
            breaker.execute(service, lambda: None)
        else:
            with pytest.raises(OSError):
                breaker.execute(service, boom)


class TestFailureRate:
    def test_opens_at_the_threshold_once_minimum_calls_are_seen(self, make_breaker: MakeBreaker) -> None:
        """5 successes and 4 failures (9 calls) stay closed; the 5th failure makes 50% of 10 and opens."""
        breaker = make_breaker(**RATE)
        run(breaker, "SSSSS" + "FFFF")
        assert breaker.state("svc").state is CircuitState.CLOSED
        run(breaker, "F")
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_below_minimum_calls_never_opens(self, make_breaker: MakeBreaker) -> None:
        """9 failures out of 9 calls do not open a circuit that needs 10 calls."""
        breaker = make_breaker(**RATE)
        run(breaker, "F" * 9)
        snap = breaker.state("svc")
        assert (snap.state, snap.calls, snap.failure_rate) == (CircuitState.CLOSED, 9, 1.0)

    def test_successes_lower_the_rate_without_resetting_it(self, make_breaker: MakeBreaker) -> None:
        """A success counts as a call: failures stay counted, and the snapshot shows the rate."""
        breaker = make_breaker(**RATE)
        run(breaker, "FSFSFSSFSS")
        snap = breaker.state("svc")
        assert (snap.state, snap.failures, snap.calls, snap.failure_rate) == (CircuitState.CLOSED, 4, 10, 0.4)
        assert snap.to_dict()["failure_rate"] == 0.4
        assert snap.max_failures is None

    def test_a_steady_30_percent_trips_the_rate_but_never_the_count(self, make_breaker: MakeBreaker) -> None:
        """F S S repeated never makes 5 failures in a row (count trigger), but is 33% >= 0.3."""
        count_only = make_breaker(max_failures=5)
        run(count_only, "FSS" * 20)
        assert count_only.state("svc").state is CircuitState.CLOSED
        rate = make_breaker(max_failures=5, failure_rate_threshold=0.3, minimum_calls=10)
        with pytest.raises(CircuitOpenError):
            run(rate, "FSS" * 20)
        assert rate.state("svc").state is CircuitState.OPEN

    @pytest.mark.asyncio
    async def test_protected_successes_count_too(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Successes through protect (sync and async) are counted in their bucket, across bucket ends."""
        breaker = make_breaker(**RATE)
        ok = breaker.protect("svc")(lambda: None)

        @breaker.protect("svc")
        async def aok() -> None:
            pass

        for _ in range(3):
            ok()
            await aok()
            clock.advance(7)  # past a bucket's end (6 s)
        run(breaker, "FF")
        snap = breaker.state("svc")
        assert (snap.calls, snap.failures) == (8, 2)

    def test_successes_while_disabled_are_not_counted(self, make_breaker: MakeBreaker) -> None:
        """A disabled circuit records nothing, successes included."""
        breaker = make_breaker(**RATE)
        breaker.disable("svc")
        ok = breaker.protect("svc")(lambda: None)
        for _ in range(5):
            ok()
            breaker.execute("svc", lambda: None)
        assert breaker.state("svc").calls == 0

    def test_calls_leave_the_window(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Successes older than the window no longer dilute the rate."""
        breaker = make_breaker(**{**RATE, "minimum_calls": 4})
        run(breaker, "S" * 20 + "FF")
        assert breaker.state("svc").state is CircuitState.CLOSED
        clock.advance(61)
        assert breaker.state("svc").calls == 0
        run(breaker, "FFFF")
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_the_count_trigger_still_fires_beside_a_rate(self, make_breaker: MakeBreaker) -> None:
        """With both triggers set, whichever fires first opens: 3 failures in a row, among many calls."""
        breaker = make_breaker(max_failures=3, failure_rate_threshold=0.9, minimum_calls=10)
        run(breaker, "S" * 50 + "FFF")
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_a_closed_circuit_starts_a_fresh_window(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """After open, half-open and a trial success, the failures that opened it are forgotten."""
        breaker = make_breaker(**RATE, open_seconds=5)
        run(breaker, "F" * 10)
        clock.advance(5)
        run(breaker, "S")
        snap = breaker.state("svc")
        assert (snap.state, snap.calls) == (CircuitState.CLOSED, 0)


class TestSlowCalls:
    def _slow(self, clock: ManualClock, seconds: float) -> Callable[[], None]:
        def call() -> None:
            clock.advance(seconds)

        return call

    def test_slow_successes_open_the_circuit(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Two slow calls among four (50%) open a slow-call-rate circuit, though every call succeeded."""
        breaker = make_breaker(
            max_failures=None, slow_call_seconds=1.0, slow_call_rate_threshold=0.5, minimum_calls=4
        )
        breaker.execute("svc", self._slow(clock, 0.1))
        breaker.execute("svc", self._slow(clock, 2.0))
        breaker.execute("svc", self._slow(clock, 0.1))
        assert breaker.state("svc").slow_call_rate == pytest.approx(1 / 3)
        breaker.execute("svc", self._slow(clock, 2.0))
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_a_slow_failure_counts_as_failed_and_slow(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """A failure that took too long is both a failure and a slow call."""
        breaker = make_breaker(
            failure_rate_threshold=1.0, slow_call_seconds=1.0, slow_call_rate_threshold=1.0, minimum_calls=5
        )

        def slow_boom() -> None:
            clock.advance(3)
            raise OSError("late and wrong")

        with pytest.raises(OSError):
            breaker.execute("svc", slow_boom)
        snap = breaker.state("svc")
        assert (snap.calls, snap.failure_rate, snap.slow_call_rate) == (1, 1.0, 1.0)

    def test_a_slow_trial_reopens(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """In half-open, a trial that succeeds but is slow counts as a failed trial."""
        breaker = make_breaker(max_failures=1, open_seconds=5, slow_call_seconds=1.0)
        run(breaker, "F")
        clock.advance(5)

        @breaker.protect("svc")
        async def slow_trial() -> None:
            clock.advance(2)

        asyncio.run(slow_trial())
        snap = breaker.state("svc")
        assert (snap.state, snap.reopenings) == (CircuitState.OPEN, 1)

    def test_time_is_read_only_with_a_slow_call_policy(self) -> None:
        """A healthy call reads no clock unless slow_call_seconds is set."""
        reads: list[int] = []

        class CountingClock(ManualClock):
            def monotonic(self) -> float:
                reads.append(1)
                return super().monotonic()

        plain = CircuitBreaker(clock=CountingClock())
        fn = plain.protect("svc")(lambda: None)
        plain.execute("svc", lambda: None)
        reads.clear()
        for _ in range(10):
            fn()
            plain.execute("svc", lambda: None)
        assert reads == []
        timed = CircuitBreaker(clock=CountingClock(), default_policy=ServicePolicy(slow_call_seconds=1))
        timed.execute("svc", lambda: None)
        reads.clear()
        timed.execute("svc", lambda: None)
        assert len(reads) == 2


class TestObserveMode:
    def test_calls_run_while_the_circuit_is_open(self, make_breaker: MakeBreaker) -> None:
        """In observe mode an open circuit rejects nothing: calls run and listeners see would_reject."""
        breaker = make_breaker(max_failures=2, mode="observe")
        run(breaker, "FF")
        assert breaker.state("svc").state is CircuitState.OPEN
        ran: list[int] = []
        with capture_events(breaker) as events:
            assert breaker.execute("svc", lambda: ran.append(1) or "ok") == "ok"
            assert breaker.protect("svc")(lambda: "ok")() == "ok"
        assert ran == [1]
        assert [e.kind for e in events] == [EventKind.WOULD_REJECT, EventKind.WOULD_REJECT]
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_the_state_machine_is_the_same_as_enforce(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """Observe mode opens, half-opens and closes exactly like enforce mode; only rejections differ."""
        states = []
        for mode in ("enforce", "observe"):
            breaker = make_breaker(max_failures=2, open_seconds=5, mode=mode)
            seen = []
            for step in "FFSSF":
                with contextlib.suppress(CircuitOpenError):
                    run(breaker, step)
                seen.append(breaker.state("svc").state)
            clock.advance(5)
            run(breaker, "S")
            seen.append(breaker.state("svc").state)
            states.append(seen)
        assert states[0] == states[1]

    @pytest.mark.asyncio
    async def test_async_calls_run_too(self, make_breaker: MakeBreaker) -> None:
        """The async path runs a would-be-rejected coroutine function as well."""
        breaker = make_breaker(max_failures=1, mode="observe")
        run(breaker, "F")

        async def work() -> str:
            return "ran"

        assert await breaker.execute_async("svc", work) == "ran"
        assert await breaker.protect("svc")(work)() == "ran"

    def test_guards_let_work_through(self, make_breaker: MakeBreaker) -> None:
        """is_available() answers True in observe mode, so up-front guards refuse nothing either."""
        breaker = make_breaker(max_failures=1, mode="observe")
        run(breaker, "F")
        assert breaker.state("svc").state is CircuitState.OPEN
        assert breaker.is_available("svc")
        assert asyncio.run(breaker.ais_available("svc"))

    def test_metrics_count_would_reject(self, make_breaker: MakeBreaker) -> None:
        """Metrics count the calls that would have been rejected, under their own outcome."""
        from prometheus_client import CollectorRegistry

        from tnm.circuit.metrics import PrometheusMetrics

        breaker = make_breaker(max_failures=1, mode="observe")
        metrics = PrometheusMetrics(breaker, registry=CollectorRegistry())
        run(breaker, "F")
        run(breaker, "SSS")
        calls = next(metrics.stats.services()).calls
        assert (calls["would_reject"], calls["rejected"]) == (3, 0)


class TestDisable:
    def test_every_call_passes_and_nothing_is_recorded(self, make_breaker: MakeBreaker) -> None:
        """A disabled circuit lets failures through without counting them, until reset."""
        breaker = make_breaker(max_failures=2)
        run(breaker, "FF")
        with capture_events(breaker) as events:
            breaker.disable("svc", reason="known flaky, rejecting hurts more")
        assert [(e.previous_state, e.state) for e in events] == [(CircuitState.OPEN, CircuitState.DISABLED)]
        run(breaker, "F" * 10 + "S")
        snap = breaker.state("svc")
        assert (snap.state, snap.failures, snap.retry_after) == (CircuitState.DISABLED, 0, 0.0)
        assert snap.last_failure is not None
        assert snap.last_failure["reason"] == "known flaky, rejecting hurts more"
        assert breaker.is_available("svc")
        breaker.reset("svc")
        run(breaker, "FF")
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_disable_without_reason(self, make_breaker: MakeBreaker) -> None:
        """disable() without a reason records "disabled" and works on an unused service."""
        breaker = make_breaker()
        breaker.disable("new")
        assert breaker.last_failure("new")["reason"] == "disabled"  # type: ignore[index]
        assert breaker.state("new").to_dict()["state"] == "disabled"


@pytest.mark.parametrize(
    "policy",
    [
        {"max_failures": None, "failure_rate_threshold": 0.5, "minimum_calls": 7},
        {"max_failures": None, "slow_call_seconds": 1, "slow_call_rate_threshold": 0.5, "minimum_calls": 7},
    ],
)
def test_trip_helper_opens_rate_circuits(make_breaker: MakeBreaker, policy: dict[str, Any]) -> None:
    """testing.trip() opens a circuit whose only trigger is a rate, failure or slow-call."""
    from tnm.circuit.testing import trip

    assert trip(make_breaker(**policy), "svc").state is CircuitState.OPEN


def test_open_error_of_a_rate_circuit_reads_well(make_breaker: MakeBreaker) -> None:
    """A circuit opened by its failure rate says so without a count threshold of None."""
    breaker = make_breaker(**RATE)
    run(breaker, "F" * 10)
    with pytest.raises(CircuitOpenError) as info:
        breaker.execute("svc", lambda: None)
    assert "None" not in str(info.value)
    assert str(info.value).startswith(
        "circuit 'svc' is open (opened by failure_rate): 10 of 10 call(s) failed (100%) in a 60s window; "
        "last failure: OSError: down; retry after"
    )


@given(ms=st.integers(0, 10**13), window_ms=st.integers(10, 6_000_000))
@example(ms=1_099_913, window_ms=10)  # the float just below 1099.9135 s, times 1000, rounds up
def test_no_time_before_a_bucket_end_falls_in_the_next_bucket(ms: int, window_ms: int) -> None:
    """A success before the current bucket's end (a float in seconds) is counted in that bucket,
    whatever the rounding of the bucket arithmetic in milliseconds."""
    policy = ServicePolicy(window_seconds=window_ms / 1000, max_failures=None, failure_rate_threshold=0.5)
    model = CircuitModel("svc", policy)
    model.roll(ms / 1000.0)
    just_before = math.nextafter(model.bucket_end, -math.inf)
    assert model.bucket_of(just_before) <= model.bucket
    assert model.bucket_of(model.bucket_end + policy.bucket_ms / 1000.0) > model.bucket


def test_rate_window_is_exact_under_threads() -> None:
    """8 threads of mixed calls: every success and failure lands in the window (no lost count)."""
    import threading

    breaker = CircuitBreaker(
        default_policy=ServicePolicy(
            window_seconds=3600, max_failures=None, failure_rate_threshold=1.0, minimum_calls=10**6
        )
    )
    ok = breaker.protect("svc")(lambda: None)
    bad = breaker.protect("svc")(boom)
    start = threading.Barrier(8)

    def work() -> None:
        start.wait(10)
        for i in range(1000):
            if i % 4 == 0:
                with contextlib.suppress(OSError):
                    bad()
            else:
                ok()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    snap = breaker.state("svc")
    assert (snap.calls, snap.failures) == (8000, 2000)
