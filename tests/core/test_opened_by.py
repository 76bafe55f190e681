"""Why a circuit opened, the figures that opened it, one number for failures, and open_on."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, EventKind
from tnm.circuit.testing import ManualClock, capture_events

from .test_rate_triggers import run

MakeBreaker = Callable[..., CircuitBreaker]

RATE = {
    "max_failures": None,
    "failure_rate_threshold": 0.5,
    "minimum_calls": 10,
    "window_seconds": 60,
    "open_seconds": 5,
}


def _raise(exc: BaseException) -> None:
    raise exc


def open_error(breaker: CircuitBreaker, service: str = "svc") -> CircuitOpenError:
    with pytest.raises(CircuitOpenError) as info:
        breaker.execute(service, lambda: None)
    return info.value


class QuotaExceeded(Exception):
    pass


class TestOpenedBy:
    def test_rate_opening_keeps_its_figures(self, make_breaker: MakeBreaker) -> None:
        """A circuit opened at 60% reports 10 calls, 6 failures and 0.6 while open, and why."""
        breaker = make_breaker(**RATE)
        run(breaker, "SSSSFFFFFF")
        snap = breaker.state("svc")
        assert snap.state is CircuitState.OPEN
        assert (snap.opened_by, snap.calls, snap.failures, snap.failure_rate) == ("failure_rate", 10, 6, 0.6)
        error = open_error(breaker)
        assert (error.opened_by, error.calls, error.failures, error.failure_rate) == (
            "failure_rate",
            10,
            6,
            0.6,
        )

    def test_slow_call_rate_opening(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A circuit opened by slow calls says slow_call_rate and keeps its slow-call rate."""
        breaker = make_breaker(
            max_failures=None, slow_call_seconds=1, slow_call_rate_threshold=0.5, minimum_calls=2
        )

        def slow() -> None:
            clock.advance(2)

        breaker.execute("svc", lambda: None)
        breaker.execute("svc", slow)
        snap = breaker.state("svc")
        assert (snap.opened_by, snap.calls, snap.slow_call_rate) == ("slow_call_rate", 2, 0.5)

    def test_count_opening_and_failed_trial(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A count opening says failures; after a failed trial, trial_failed with the first figures."""
        breaker = make_breaker(max_failures=3, window_seconds=10, open_seconds=5)
        run(breaker, "FFF")
        assert (breaker.state("svc").opened_by, breaker.state("svc").failures) == ("failures", 3)
        clock.advance(30)  # the window has long passed: the figures stay
        run(breaker, "F")  # the trial fails
        snap = breaker.state("svc")
        assert (snap.state, snap.opened_by, snap.failures) == (CircuitState.OPEN, "trial_failed", 3)
        error = open_error(breaker)
        assert (error.failures, error.opened_by) == (3, "trial_failed")
        assert "3 failure(s)" in str(error)
        clock.advance(30)
        assert breaker.state("svc").failures == 3  # one number, at every moment

    def test_half_open_keeps_figures_until_closed(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """Half-open keeps opened_by and the figures; closing clears them."""
        breaker = make_breaker(**RATE)
        run(breaker, "SSSSFFFFFF")
        clock.advance(5)
        snap = breaker.state("svc")
        assert (snap.state, snap.opened_by, snap.calls) == (CircuitState.HALF_OPEN, "failure_rate", 10)
        run(breaker, "S")
        snap = breaker.state("svc")
        assert (snap.state, snap.opened_by, snap.calls, snap.failures) == (CircuitState.CLOSED, None, 0, 0)

    def test_operator_and_disabled(self, make_breaker: MakeBreaker) -> None:
        """force_open says operator; disabled and closed say None."""
        breaker = make_breaker(max_failures=3)
        assert breaker.state("svc").opened_by is None
        breaker.force_open("svc")
        assert breaker.state("svc").opened_by == "operator"
        assert open_error(breaker).opened_by == "operator"
        breaker.disable("svc")
        assert breaker.state("svc").opened_by is None
        breaker.reset("svc")
        assert breaker.state("svc").opened_by is None

    def test_event_carries_the_trigger(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """The STATE_CHANGE that opens a circuit carries trigger; other changes carry None."""
        breaker = make_breaker(max_failures=1, open_seconds=5)
        with capture_events(breaker) as events:
            run(breaker, "F")
            clock.advance(5)
            run(breaker, "F")
            breaker.force_open("svc")
            breaker.reset("svc")
        changes = [(e.state, e.trigger) for e in events if e.kind is EventKind.STATE_CHANGE]
        assert changes == [
            (CircuitState.OPEN, "failures"),
            (CircuitState.HALF_OPEN, None),
            (CircuitState.OPEN, "trial_failed"),
            (CircuitState.FORCED_OPEN, "operator"),
            (CircuitState.CLOSED, None),
        ]

    def test_open_error_pickles_with_every_field(self, make_breaker: MakeBreaker) -> None:
        """CircuitOpenError keeps opened_by and the figures through pickle."""
        breaker = make_breaker(**RATE)
        run(breaker, "SSSSFFFFFF")
        error = open_error(breaker)
        copy = pickle.loads(pickle.dumps(error))
        assert (copy.opened_by, copy.calls, copy.failures, copy.failure_rate, str(copy)) == (
            "failure_rate",
            10,
            6,
            0.6,
            str(error),
        )


class TestOpenOn:
    def test_one_listed_failure_opens_at_once(self, make_breaker: MakeBreaker) -> None:
        """One QuotaExceeded opens a closed circuit at once, opened_by open_on."""
        breaker = make_breaker(max_failures=5, open_on=(QuotaExceeded,))
        with pytest.raises(QuotaExceeded):
            breaker.execute("svc", _raise, QuotaExceeded())
        snap = breaker.state("svc")
        assert (snap.state, snap.opened_by, snap.failures) == (CircuitState.OPEN, "open_on", 1)

    def test_predicate_and_other_failures(self, make_breaker: MakeBreaker) -> None:
        """A predicate's yes opens; other failures count as usual."""
        breaker = make_breaker(max_failures=5, open_on=[lambda e: "suspended" in str(e)])
        run(breaker, "FF")
        assert breaker.state("svc").state is CircuitState.CLOSED
        with pytest.raises(OSError):
            breaker.execute("svc", _raise, OSError("account suspended"))
        assert breaker.state("svc").opened_by == "open_on"

    def test_from_half_open(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A listed failure as a trial re-opens the circuit with opened_by open_on."""
        breaker = make_breaker(max_failures=1, open_seconds=5, open_on=(QuotaExceeded,))
        run(breaker, "F")
        clock.advance(5)
        with pytest.raises(QuotaExceeded):
            breaker.execute("svc", _raise, QuotaExceeded())
        assert (breaker.state("svc").state, breaker.state("svc").opened_by) == (CircuitState.OPEN, "open_on")

    def test_ignore_still_wins(self, make_breaker: MakeBreaker) -> None:
        """An ignored exception never opens the circuit, even if open_on lists it."""
        breaker = make_breaker(open_on=(QuotaExceeded,), ignore_exceptions=(QuotaExceeded,))
        with pytest.raises(QuotaExceeded):
            breaker.execute("svc", _raise, QuotaExceeded())
        assert breaker.state("svc").state is CircuitState.CLOSED

    def test_every_entry_point(self, make_breaker: MakeBreaker) -> None:
        """protect, guard and generators honour open_on like execute."""
        breaker = make_breaker(open_on=(QuotaExceeded,))

        @breaker.protect("a")
        def call() -> None:
            raise QuotaExceeded

        @breaker.protect("c")
        def rows() -> object:
            yield 1
            raise QuotaExceeded

        with pytest.raises(QuotaExceeded):
            call()
        with pytest.raises(QuotaExceeded), breaker.guard("b"):
            raise QuotaExceeded
        with pytest.raises(QuotaExceeded):
            list(rows())  # type: ignore[call-overload]
        assert [breaker.state(s).opened_by for s in "abc"] == ["open_on"] * 3

    def test_entries_are_validated(self) -> None:
        """open_on refuses entries that are neither exception classes nor predicates."""
        from tnm.circuit import InvalidConfigTypeError, ServicePolicy

        with pytest.raises(InvalidConfigTypeError) as info:
            ServicePolicy(open_on=[int])
        assert info.value.field == "open_on"


class TestOpenOnBesideOnExceptions:
    def test_open_on_counts_even_if_on_exceptions_does_not_list_it(self, make_breaker: MakeBreaker) -> None:
        """With on_exceptions=[OSError], a QuotaExceeded listed in open_on still opens the circuit."""
        breaker = make_breaker(max_failures=5, on_exceptions=[OSError], open_on=[QuotaExceeded])
        with pytest.raises(KeyError):
            breaker.execute("svc", _raise, KeyError())
        assert breaker.state("svc").state is CircuitState.CLOSED
        with pytest.raises(QuotaExceeded):
            breaker.execute("svc", _raise, QuotaExceeded())
        assert breaker.state("svc").opened_by == "open_on"
