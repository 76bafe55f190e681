"""The circuit's states and transitions, driven by a ManualClock (no sleeping)."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from collections.abc import Callable

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock

MakeBreaker = Callable[..., CircuitBreaker]


class DriftingClock:
    """Wall and monotonic clocks that advance at different rates, as under NTP slewing."""

    def __init__(self) -> None:
        self._monotonic = 1_000.0
        self._time = 1_700_000_000.0

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._time

    def tick(self, seconds: float, *, wall: float) -> None:
        self._monotonic += seconds
        self._time += wall


def fail(breaker: CircuitBreaker, service: str = "svc", times: int = 1) -> None:
    for _ in range(times):
        breaker.record_failure(service, "boom")


class TestCounting:
    def test_opens_at_exactly_max_failures(self, make_breaker: MakeBreaker) -> None:
        """max_failures - 1 failures keep it closed; the next one opens it."""
        breaker = make_breaker(window_seconds=60, max_failures=3)
        fail(breaker, times=2)
        assert breaker.state("svc").state is CircuitState.CLOSED
        assert breaker.state("svc").failures == 2
        fail(breaker)
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_window_slides(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Failures older than window_seconds no longer count."""
        breaker = make_breaker(window_seconds=10, max_failures=3)
        fail(breaker, times=2)
        clock.advance(10.5)
        fail(breaker, times=2)
        assert breaker.state("svc").state is CircuitState.CLOSED
        assert breaker.state("svc").failures == 2
        clock.advance(5)
        fail(breaker)
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_success_resets_count(self, make_breaker: MakeBreaker) -> None:
        """A success while closed resets the count to zero."""
        breaker = make_breaker(max_failures=3)
        fail(breaker, times=2)
        breaker.record_success("svc")
        fail(breaker, times=2)
        assert breaker.state("svc").state is CircuitState.CLOSED

    def test_ignored_exceptions_are_neither(self, make_breaker: MakeBreaker) -> None:
        """An ignored exception neither counts as a failure nor resets the count."""
        breaker = make_breaker(max_failures=2, ignore_exceptions=[KeyError])
        op = breaker.protect("svc")(_raiser)
        with pytest.raises(ValueError):
            op(ValueError())
        with pytest.raises(KeyError):
            op(KeyError())
        assert breaker.state("svc").failures == 1
        with pytest.raises(ValueError):
            op(ValueError())
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_on_exceptions_only_those_count(self, make_breaker: MakeBreaker) -> None:
        """With on_exceptions, other exceptions are not failures."""
        breaker = make_breaker(max_failures=1, on_exceptions=[ConnectionError])
        op = breaker.protect("svc")(_raiser)
        with pytest.raises(ValueError):
            op(ValueError())
        assert breaker.is_available("svc")
        with pytest.raises(ConnectionRefusedError):
            op(ConnectionRefusedError())  # a subclass counts
        assert not breaker.is_available("svc")

    def test_memory_is_bounded(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A circuit that keeps failing without opening holds the same memory after 20,000 more failures."""
        breaker = make_breaker(window_seconds=1, max_failures=4)

        def keep_failing(times: int) -> None:
            for _ in range(times):
                fail(breaker)
                clock.advance(0.5)

        keep_failing(200)
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            keep_failing(20_000)
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert grown < 16_000  # a failure time kept per failure would be over 500 kB


class TestOpenAndHalfOpen:
    def test_open_time_defaults_to_window(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Without open_seconds the circuit stays open window_seconds, then admits a trial."""
        breaker = make_breaker(window_seconds=30, max_failures=1)
        fail(breaker)
        assert breaker.state("svc").retry_after == 30
        clock.advance(29.9)
        assert not breaker.is_available("svc")
        clock.advance(0.1)
        assert breaker.is_available("svc")
        assert breaker.state("svc").state is CircuitState.HALF_OPEN

    def test_rejection_carries_context(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """CircuitOpenError has service, retry_after and last_failure; its message says why."""
        breaker = make_breaker(window_seconds=60, max_failures=2, open_seconds=20)
        op = breaker.protect("payments")(_raiser)
        for _ in range(2):
            with pytest.raises(TimeoutError):
                op(TimeoutError("upstream timed out"))
        clock.advance(5)
        with pytest.raises(CircuitOpenError) as info:
            op(TimeoutError())
        err = info.value
        assert err.service == "payments"
        assert err.retry_after == pytest.approx(15)
        assert err.last_failure == {"reason": "TimeoutError: upstream timed out", "ts": clock.time() - 5}
        message = str(err)
        for part in ("payments", "2 failure", "60s window", "upstream timed out"):
            assert part in message

    def test_is_available_takes_no_permit(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Asking is_available in half-open, however often, leaves the trial permit free."""
        breaker = make_breaker(max_failures=1, open_seconds=1)
        fail(breaker)
        clock.advance(1)
        for _ in range(10):
            assert breaker.is_available("svc")
        assert breaker.execute("svc", lambda: "trial") == "trial"
        assert breaker.state("svc").state is CircuitState.CLOSED

    def test_half_open_lets_exactly_max_calls_through(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """With half_open_max_calls=2, two trials run at once and a third is rejected."""
        breaker = make_breaker(max_failures=1, open_seconds=1, half_open_max_calls=2, success_threshold=2)
        fail(breaker)
        clock.advance(1)
        release = threading.Event()
        started = threading.Barrier(3)

        def trial() -> str:
            started.wait(timeout=5)
            assert release.wait(timeout=5)
            return "ok"

        op = breaker.protect("svc")(trial)
        results: list[str] = []
        threads = [threading.Thread(target=lambda: results.append(op())) for _ in range(2)]
        for t in threads:
            t.start()
        started.wait(timeout=5)
        with pytest.raises(CircuitOpenError):
            op()
        assert not breaker.is_available("svc")
        release.set()
        for t in threads:
            t.join(timeout=5)
        assert results == ["ok", "ok"]
        assert breaker.state("svc").state is CircuitState.CLOSED

    def test_success_threshold(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """success_threshold=3 needs three trial successes to close."""
        breaker = make_breaker(max_failures=1, open_seconds=1, success_threshold=3)
        fail(breaker)
        clock.advance(1)
        for expected in (CircuitState.HALF_OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED):
            breaker.execute("svc", lambda: None)
            assert breaker.state("svc").state is expected

    def test_trial_failure_reopens_with_backoff(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Each failed trial re-opens for longer, up to the cap; closing resets the backoff."""
        breaker = make_breaker(max_failures=1, open_seconds=10, backoff_multiplier=2, max_open_seconds=30)
        fail(breaker)
        seen = []
        for _ in range(3):
            seen.append(breaker.state("svc").retry_after)
            clock.advance(seen[-1])
            with pytest.raises(OSError):
                breaker.execute("svc", _raiser, OSError("still down"))
        seen.append(breaker.state("svc").retry_after)
        assert seen == [10, 20, 30, 30]
        clock.advance(30)
        breaker.execute("svc", lambda: None)
        fail(breaker)
        assert breaker.state("svc").retry_after == 10

    def test_stuck_trial_loses_its_permit(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A trial that never finishes frees its permit after trial_timeout_seconds."""
        breaker = make_breaker(max_failures=1, open_seconds=1, trial_timeout_seconds=5)
        fail(breaker)
        clock.advance(1)
        token = breaker.circuits()["svc"].acquire()
        assert token > 0  # a trial that will never report back
        assert not breaker.is_available("svc")
        assert breaker.state("svc").retry_after == 5
        clock.advance(5)
        assert breaker.is_available("svc")
        breaker.execute("svc", lambda: None)
        assert breaker.state("svc").state is CircuitState.CLOSED

    def test_cancelled_trial_gives_permit_back(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """An async trial cancelled mid-flight returns its permit at once."""
        breaker = make_breaker(max_failures=1, open_seconds=1)
        fail(breaker)
        clock.advance(1)

        @breaker.protect("svc")
        async def slow() -> None:
            await asyncio.sleep(3600)

        async def main() -> None:
            task = asyncio.create_task(slow())
            await asyncio.sleep(0)
            assert not breaker.is_available("svc")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert breaker.is_available("svc")
            assert breaker.state("svc").state is CircuitState.HALF_OPEN

        asyncio.run(main())

    def test_interrupted_trial_gives_permit_back(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A sync trial interrupted by KeyboardInterrupt returns its permit and records nothing."""
        breaker = make_breaker(max_failures=1, open_seconds=1)
        fail(breaker)
        clock.advance(1)
        with pytest.raises(KeyboardInterrupt):
            breaker.execute("svc", _raiser, KeyboardInterrupt())
        assert breaker.is_available("svc")
        assert breaker.state("svc").state is CircuitState.HALF_OPEN


class TestManualControl:
    def test_force_open_until_reset(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """force_open rejects every call, whatever time passes, until reset."""
        breaker = make_breaker(window_seconds=1, max_failures=5)
        breaker.force_open("svc", reason="maintenance")
        clock.advance(10_000)
        with pytest.raises(CircuitOpenError) as info:
            breaker.execute("svc", lambda: None)
        assert info.value.retry_after is None
        assert "maintenance" in str(info.value)
        snap = breaker.state("svc")
        assert snap.state is CircuitState.FORCED_OPEN
        assert snap.retry_after is None
        breaker.reset("svc")
        assert breaker.execute("svc", lambda: 1) == 1

    def test_force_open_with_none_stores_the_default_reason(self, make_breaker: MakeBreaker) -> None:
        """force_open(svc, None) stores "forced open", never the text "None"."""
        breaker = make_breaker()
        breaker.force_open("svc", None)
        assert breaker.last_failure("svc")["reason"] == "forced open"  # type: ignore[index]
        breaker.force_open("other")
        assert breaker.last_failure("other")["reason"] == "forced open"  # type: ignore[index]

    def test_record_failure_with_none_stores_no_text(self, make_breaker: MakeBreaker) -> None:
        """record_failure(svc, None) stores an empty reason, never the text "None"."""
        breaker = make_breaker()
        breaker.record_failure("svc", None)
        assert breaker.last_failure("svc")["reason"] == ""  # type: ignore[index]

    def test_last_failure_ts_is_stored_once(self) -> None:
        """One failure's ts stays the same on every read, even while the wall clock drifts
        from the monotonic one (NTP slewing)."""
        clock = DriftingClock()
        breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=2, open_seconds=5))
        breaker.record_failure("svc", "x")
        first = breaker.last_failure("svc")
        clock.tick(1.0, wall=1.001)
        assert breaker.last_failure("svc") == first
        assert breaker.state("svc").last_failure == first
        breaker.record_failure("svc", "y")  # opens
        clock.tick(1.0, wall=0.999)
        second = breaker.last_failure("svc")
        assert second is not None
        assert second != first
        with pytest.raises(CircuitOpenError) as info:
            breaker.execute("svc", lambda: None)
        assert info.value.last_failure == second
        assert breaker.last_failure("svc") == second

    def test_reset_closes_and_clears(self, make_breaker: MakeBreaker) -> None:
        """reset closes an open circuit and clears its count."""
        breaker = make_breaker(max_failures=2)
        fail(breaker, times=2)
        breaker.reset("svc")
        snap = breaker.state("svc")
        assert (snap.state, snap.failures) == (CircuitState.CLOSED, 0)
        fail(breaker)
        assert breaker.is_available("svc")

    def test_snapshot(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """state() reports state, failures, threshold, retry_after and last failure."""
        breaker = make_breaker(window_seconds=60, max_failures=3, open_seconds=12)
        assert breaker.state("svc").to_dict() == {
            "service": "svc",
            "state": "closed",
            "failures": 0,
            "max_failures": 3,
            "window_seconds": 60.0,
            "retry_after": 0.0,
            "last_failure": None,
            "trials_in_flight": 0,
            "reopenings": 0,
            "calls": None,
            "failure_rate": None,
            "slow_call_rate": None,
            "opened_by": None,
            "failing_processes": None,
        }
        fail(breaker, times=3)
        snap = breaker.state("svc")
        assert (snap.state, snap.failures, snap.max_failures, snap.retry_after) == (
            CircuitState.OPEN,
            3,
            3,
            12,
        )
        assert snap.last_failure == {"reason": "boom", "ts": clock.time()}


class TestPolicies:
    def test_service_policy_beats_default(self, make_breaker: MakeBreaker) -> None:
        """A service with its own policy uses it; others use the default."""
        breaker = make_breaker(max_failures=5, service_policies={"strict": ServicePolicy(max_failures=1)})
        fail(breaker, "strict")
        fail(breaker, "lenient")
        assert not breaker.is_available("strict")
        assert breaker.is_available("lenient")


def _raiser(exc: BaseException) -> None:
    raise exc


def test_hold_open_on_the_local_backend(
    make_breaker: Callable[..., CircuitBreaker], clock: ManualClock
) -> None:
    """hold_open stretches an open circuit (capped, never shorter) and ignores a closed one."""
    breaker = make_breaker(max_failures=1, open_seconds=2, max_open_seconds=60)
    breaker.hold_open("svc", 30)
    assert breaker.state("svc").state is CircuitState.CLOSED
    breaker.record_failure("svc", "HTTP 503")
    breaker.hold_open("svc", 30)
    assert breaker.state("svc").retry_after == pytest.approx(30)
    breaker.hold_open("svc", 5)
    assert breaker.state("svc").retry_after == pytest.approx(30)
    breaker.hold_open("svc", 600)
    assert breaker.state("svc").retry_after == pytest.approx(60)
    clock.advance(60)
    assert breaker.is_available("svc")
