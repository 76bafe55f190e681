"""tnm.circuit.testing lets users test their own code under open and half-open circuits."""

from __future__ import annotations

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock, capture_events, half_open, trip


class TestHelpers:
    def test_trip_opens_with_the_policy_threshold(self) -> None:
        """trip() records exactly max_failures failures, so retry_after is the real open time."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=4, window_seconds=9))
        snap = trip(breaker, "es")
        assert snap.state is CircuitState.OPEN
        assert snap.failures == 4
        with pytest.raises(CircuitOpenError):
            breaker.execute("es", lambda: None)

    def test_half_open_moves_the_manual_clock(self) -> None:
        """half_open() trips and moves a ManualClock past the open time."""
        clock = ManualClock()
        breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=2, open_seconds=30))
        start = clock.monotonic()
        assert half_open(breaker, "es").state is CircuitState.HALF_OPEN
        assert clock.monotonic() - start == 30
        assert breaker.execute("es", lambda: "trial") == "trial"

    def test_half_open_needs_manual_clock(self) -> None:
        """half_open() on a real clock is a clear error, not a sleep."""
        with pytest.raises(TypeError, match="ManualClock"):
            half_open(CircuitBreaker(), "es")

    def test_manual_clock_never_goes_back(self) -> None:
        """A ManualClock refuses to go backwards; None advances by nothing."""
        clock = ManualClock()
        clock.advance(None)
        with pytest.raises(ValueError, match="backwards"):
            clock.advance(-1)

    def test_capture_events_detaches(self) -> None:
        """capture_events stops collecting when the block ends."""
        breaker = CircuitBreaker()
        with capture_events(breaker) as events:
            breaker.record_failure("es", "x")
        breaker.record_failure("es", "y")
        assert [e.reason for e in events] == ["x"]
