"""Redis: why a circuit opened, the figures that did, and open_on, fleet-wide on a real server."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, EventKind
from tnm.circuit.testing import ManualClock, capture_events

MakeBreaker = Callable[..., CircuitBreaker]


class QuotaExceeded(Exception):
    pass


def _raise(exc: BaseException) -> None:
    raise exc


async def _araise(exc: BaseException) -> None:
    raise exc


class TestOpenedByOnRedis:
    def test_count_opening_then_failed_trial(
        self, make_redis_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """Another process reads opened_by and the opening count; a failed trial keeps them."""
        app = make_redis_breaker(max_failures=3, window_seconds=10, open_seconds=5)
        other = make_redis_breaker(max_failures=3, window_seconds=10, open_seconds=5)
        for _ in range(3):
            with pytest.raises(OSError):
                app.execute("svc", _raise, OSError("down"))
        snap = other.state("svc")
        assert (snap.state, snap.opened_by, snap.failures) == (CircuitState.OPEN, "failures", 3)
        clock.advance(30)
        with pytest.raises(OSError):
            app.execute("svc", _raise, OSError("still down"))
        snap = other.state("svc")
        assert (snap.state, snap.opened_by, snap.failures) == (CircuitState.OPEN, "trial_failed", 3)
        with pytest.raises(CircuitOpenError) as info:
            other.execute("svc", lambda: None)
        error = pickle.loads(pickle.dumps(info.value))
        assert (error.opened_by, error.failures) == ("trial_failed", 3)

    def test_rate_opening_keeps_figures(self, make_redis_breaker: MakeBreaker) -> None:
        """A circuit opened at 60% reports its 10 calls and 0.6 while open, not an emptied window."""
        app = make_redis_breaker(max_failures=None, failure_rate_threshold=0.5, minimum_calls=10)
        for _ in range(4):
            app.execute("svc", lambda: None)
        for _ in range(6):
            with pytest.raises(OSError):
                app.execute("svc", _raise, OSError("down"))
        snap = app.state("svc")
        assert (snap.state, snap.opened_by, snap.calls, snap.failures, snap.failure_rate) == (
            CircuitState.OPEN,
            "failure_rate",
            10,
            6,
            0.6,
        )

    def test_trigger_on_the_event_and_operator(self, make_redis_breaker: MakeBreaker) -> None:
        """The opening state_change carries its trigger; force_open says operator; reset clears it."""
        app = make_redis_breaker(max_failures=1)
        with capture_events(app) as events:
            with pytest.raises(OSError):
                app.execute("svc", _raise, OSError("down"))
            app.force_open("svc")
        openings = [(e.state, e.trigger) for e in events if e.kind is EventKind.STATE_CHANGE]
        assert openings == [(CircuitState.OPEN, "failures"), (CircuitState.FORCED_OPEN, "operator")]
        assert app.state("svc").opened_by == "operator"
        app.reset("svc")
        assert app.state("svc").opened_by is None


class TestOpenOnRedis:
    def test_one_listed_failure_opens_fleet_wide(self, make_redis_breaker: MakeBreaker) -> None:
        """One open_on failure in one process opens the circuit for another at once."""
        app = make_redis_breaker(max_failures=5, open_on=(QuotaExceeded,))
        other = make_redis_breaker(max_failures=5, open_on=(QuotaExceeded,))
        assert other.is_available("svc")
        with pytest.raises(QuotaExceeded):
            app.execute("svc", _raise, QuotaExceeded())
        snap = other.state("svc")
        assert (snap.state, snap.opened_by, snap.failures) == (CircuitState.OPEN, "open_on", 1)
        with pytest.raises(CircuitOpenError):
            other.execute("svc", lambda: None)

    def test_async_path_and_ignore_wins(self, make_redis_breaker: MakeBreaker) -> None:
        """The async path trips too; an ignored exception listed in open_on opens nothing."""
        app = make_redis_breaker(
            max_failures=5, open_on=(QuotaExceeded, KeyError), ignore_exceptions=(KeyError,)
        )

        async def main() -> None:
            try:
                with pytest.raises(KeyError):
                    await app.execute_async("a", _araise, KeyError("x"))
                assert (await app.astate("a")).state is CircuitState.CLOSED
                with pytest.raises(QuotaExceeded):
                    await app.execute_async("b", _araise, QuotaExceeded())
                assert (await app.astate("b")).opened_by == "open_on"
            finally:
                await app.aclose()

        asyncio.run(main())
