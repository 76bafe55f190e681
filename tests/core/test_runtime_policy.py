"""Changing a service's policy in a running process: set_policy, clear_policy, policy_source."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from tnm.circuit import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    EventKind,
    InvalidConfigError,
    ServicePolicy,
)
from tnm.circuit.testing import ManualClock, capture_events

from ..counting_hooks import HookedCount

MakeBreaker = Callable[..., CircuitBreaker]


class Boom(Exception):
    pass


class Ignored(Exception):
    pass


def fail(breaker: CircuitBreaker, service: str = "svc", times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            breaker.execute(service, _boom)


def _boom() -> None:
    raise Boom("down")


class TestSetPolicy:
    def test_future_calls_use_the_new_threshold(self, make_breaker: MakeBreaker) -> None:
        """After set_policy(max_failures=2) two failures open a circuit the code gave five."""
        breaker = make_breaker(max_failures=5)
        breaker.set_policy("svc", ServicePolicy(max_failures=2))
        fail(breaker, times=2)
        assert breaker.state("svc").state is CircuitState.OPEN
        assert breaker.policy_for("svc").max_failures == 2

    def test_lower_threshold_already_exceeded_opens_at_next_failure(self, make_breaker: MakeBreaker) -> None:
        """Four failures under max_failures=5, then max_failures=3: the next failure opens it."""
        breaker = make_breaker(max_failures=5)
        fail(breaker, times=4)
        breaker.set_policy("svc", ServicePolicy(max_failures=3))
        assert breaker.state("svc").state is CircuitState.CLOSED
        fail(breaker)
        snap = breaker.state("svc")
        assert (snap.state, snap.opened_by, snap.max_failures) == (CircuitState.OPEN, "failures", 3)

    def test_lower_threshold_already_exceeded_opens_at_next_success(self, make_breaker: MakeBreaker) -> None:
        """Four failures under max_failures=5, then max_failures=3: the next outcome, a success,
        is judged under the new threshold first and opens the circuit (the call's result kept)."""
        breaker = make_breaker(max_failures=5)
        calls = breaker.protect("svc")(lambda: "ok")
        fail(breaker, times=4)
        breaker.set_policy("svc", ServicePolicy(max_failures=3))
        assert calls() == "ok"
        snap = breaker.state("svc")
        assert (snap.state, snap.opened_by) == (CircuitState.OPEN, "failures")
        with pytest.raises(CircuitOpenError):
            calls()

    def test_lower_rate_already_exceeded_opens_at_next_success(self, make_breaker: MakeBreaker) -> None:
        """A 40% failure rate under a 50% threshold, then a 30% one: the next success opens it."""
        breaker = make_breaker(max_failures=None, failure_rate_threshold=0.5, minimum_calls=5)
        for _ in range(3):
            breaker.execute("svc", lambda: None)
        fail(breaker, times=2)
        assert breaker.state("svc").state is CircuitState.CLOSED
        breaker.set_policy("svc", {"failure_rate_threshold": 0.3})
        breaker.execute("svc", lambda: None)
        snap = breaker.state("svc")
        assert (snap.state, snap.opened_by) == (CircuitState.OPEN, "failure_rate")

    def test_a_threshold_not_met_leaves_the_next_success_alone(self, make_breaker: MakeBreaker) -> None:
        """Two failures, then max_failures=3: the next success resets the count as before."""
        breaker = make_breaker(max_failures=5)
        fail(breaker, times=2)
        breaker.set_policy("svc", ServicePolicy(max_failures=3))
        breaker.execute("svc", lambda: None)
        fail(breaker, times=2)
        assert breaker.state("svc").state is CircuitState.CLOSED

    def test_wrapper_made_earlier_sees_the_change(self, make_breaker: MakeBreaker) -> None:
        """A protect wrapper decorated before the change trips at the new threshold."""
        breaker = make_breaker(max_failures=10)

        @breaker.protect("svc")
        def call() -> None:
            raise Boom("down")

        breaker.set_policy("svc", ServicePolicy(max_failures=2))
        for _ in range(2):
            with pytest.raises(Boom):
                call()
        with pytest.raises(CircuitOpenError):
            call()

    def test_async_wrapper_made_earlier_sees_the_change(self, make_breaker: MakeBreaker) -> None:
        """An async protect wrapper decorated before the change trips at the new threshold."""
        breaker = make_breaker(max_failures=10)

        @breaker.protect("svc")
        async def call() -> None:
            raise Boom("down")

        breaker.set_policy("svc", ServicePolicy(max_failures=1))

        async def main() -> None:
            with pytest.raises(Boom):
                await call()
            with pytest.raises(CircuitOpenError):
                await call()

        asyncio.run(main())

    def test_wrapper_keeps_its_exception_rules(self, make_breaker: MakeBreaker) -> None:
        """A wrapper decorated with ignore_exceptions keeps ignoring them after a change."""
        breaker = make_breaker(max_failures=10)

        @breaker.protect("svc", ignore_exceptions=[Ignored])
        def call() -> None:
            raise Ignored

        breaker.set_policy("svc", ServicePolicy(max_failures=1))
        for _ in range(3):
            with pytest.raises(Ignored):
                call()
        assert breaker.state("svc").state is CircuitState.CLOSED

    def test_wrapper_starts_timing_under_a_slow_call_policy(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """A wrapper made before a slow-call policy was set times its calls once it is."""
        breaker = make_breaker(max_failures=10)

        @breaker.protect("svc")
        def call() -> None:
            clock.advance(2)

        breaker.set_policy(
            "svc",
            ServicePolicy(
                max_failures=None, slow_call_seconds=1, slow_call_rate_threshold=0.5, minimum_calls=2
            ),
        )
        call()
        call()
        snap = breaker.state("svc")
        assert (snap.state, snap.opened_by) == (CircuitState.OPEN, "slow_call_rate")

    def test_observe_mode_reaches_an_earlier_wrapper(self, make_breaker: MakeBreaker) -> None:
        """Switching an open circuit to mode="observe" lets an earlier wrapper's calls run."""
        breaker = make_breaker(max_failures=1)
        ran: list[int] = []

        @breaker.protect("svc")
        def call() -> None:
            ran.append(1)

        breaker.force_open("svc")
        with pytest.raises(CircuitOpenError):
            call()
        breaker.set_policy("svc", ServicePolicy(max_failures=1, mode="observe"))
        call()
        assert ran == [1]

    def test_open_deadline_cut_to_a_shorter_open_time(self, make_breaker: MakeBreaker) -> None:
        """An open circuit with 30 s left and open_seconds set to 5 lets a trial run 5 s later."""
        breaker = make_breaker(max_failures=1, open_seconds=30)
        fail(breaker)
        breaker.set_policy("svc", ServicePolicy(max_failures=1, open_seconds=5))
        assert breaker.state("svc").retry_after == pytest.approx(5)

    def test_open_deadline_kept_when_the_new_open_time_is_longer(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """A longer open_seconds leaves an open circuit's deadline where it was."""
        breaker = make_breaker(max_failures=1, open_seconds=30)
        fail(breaker)
        clock.advance(10)
        breaker.set_policy("svc", ServicePolicy(max_failures=1, open_seconds=100))
        assert breaker.state("svc").retry_after == pytest.approx(20)

    def test_rate_policy_set_on_a_count_circuit(self, make_breaker: MakeBreaker) -> None:
        """A count circuit switched to a failure-rate policy opens on the rate."""
        breaker = make_breaker(max_failures=100)
        breaker.set_policy(
            "svc", ServicePolicy(max_failures=None, failure_rate_threshold=0.5, minimum_calls=4)
        )
        for _ in range(2):
            breaker.execute("svc", lambda: None)
        fail(breaker, times=2)
        assert breaker.state("svc").opened_by == "failure_rate"

    def test_mapping_changes_only_those_fields(self, make_breaker: MakeBreaker) -> None:
        """set_policy(service, {"max_failures": 2}) keeps every other field of the policy in force."""
        breaker = make_breaker(max_failures=5, open_seconds=12, minimum_calls=7)
        breaker.set_policy("svc", {"max_failures": 2})
        policy = breaker.policy_for("svc")
        assert (policy.max_failures, policy.open_seconds, policy.minimum_calls) == (2, 12, 7)

    def test_circuit_made_later_uses_the_override(self, make_breaker: MakeBreaker) -> None:
        """A service first called after set_policy gets the override."""
        breaker = make_breaker(max_failures=5)
        breaker.set_policy("later", ServicePolicy(max_failures=1))
        fail(breaker, "later")
        assert breaker.state("later").state is CircuitState.OPEN

    def test_bad_policy_refused_naming_the_field(self, make_breaker: MakeBreaker) -> None:
        """A bad policy or field value is refused naming the field, and changes nothing."""
        breaker = make_breaker()
        with pytest.raises(InvalidConfigError) as info:
            breaker.set_policy("svc", 5)  # type: ignore[arg-type]
        assert info.value.field == "policy"
        with pytest.raises(InvalidConfigError) as info:
            breaker.set_policy("svc", {"max_failures": 0})
        assert info.value.field == "max_failures"
        assert breaker.policy_source("svc") == "code"
        with pytest.raises(InvalidConfigError) as info:
            breaker.set_policy("svc", ServicePolicy(max_failures=0))
        assert info.value.field == "max_failures"

    def test_fleet_needs_redis(self, make_breaker: MakeBreaker) -> None:
        """set_policy(..., fleet=True) on the local backend is refused naming fleet, nothing applied."""
        breaker = make_breaker()
        with pytest.raises(InvalidConfigError) as info:
            breaker.set_policy("svc", ServicePolicy(max_failures=1), fleet=True)
        assert info.value.field == "fleet"
        assert breaker.policy_source("svc") == "code"

    def test_a_count_policy_changed_to_rates_alone_opens_on_no_count(self, make_breaker: MakeBreaker) -> None:
        """A failure counted under a count trigger, then a policy with rate triggers alone: the
        next outcome checks the new policy's triggers only, and the circuit stays closed."""
        breaker = make_breaker(max_failures=5)
        fail(breaker)
        breaker.set_policy(
            "svc", ServicePolicy(max_failures=None, failure_rate_threshold=0.5, minimum_calls=100)
        )
        breaker.execute("svc", lambda: None)
        snap = breaker.state("svc")
        assert (snap.state, snap.opened_by) == (CircuitState.CLOSED, None)

    def test_an_outcome_counted_while_the_bucket_width_changes_stays_in_the_window(
        self, make_breaker: MakeBreaker
    ) -> None:
        """A failure that reaches the window just after a change of its buckets' width (another
        thread's ``set_policy``) is counted in the new window, not dropped with an old bucket."""
        rates = {"max_failures": None, "failure_rate_threshold": 0.5, "minimum_calls": 100}
        breaker = make_breaker(window_seconds=60, **rates)
        call = breaker.protect("svc")(_boom)
        breaker.execute("svc", lambda: None)
        model = breaker._circuit("svc")._model  # type: ignore[attr-defined]
        hooked = model.fail_counter = HookedCount(model.fail_counter, lambda count: change_then_count())

        def change_then_count() -> int:
            breaker.set_policy("svc", ServicePolicy(window_seconds=120, **rates))  # a thread switch
            return next(model.fail_counter)  # (the new window's counter)

        with pytest.raises(Boom):
            call()
        assert model.fail_counter is not hooked
        snap = breaker.state("svc")
        assert (snap.calls, snap.failures) == (1, 1)


class TestClearAndSource:
    def test_sources(self, make_breaker: MakeBreaker) -> None:
        """policy_source says process after set_policy and code again after clear_policy."""
        code = ServicePolicy(max_failures=7)
        breaker = make_breaker(service_policies={"svc": code})
        assert breaker.policy_source("svc") == "code"
        breaker.set_policy("svc", ServicePolicy(max_failures=2))
        assert breaker.policy_source("svc") == "process"
        breaker.clear_policy("svc")
        assert breaker.policy_source("svc") == "code"
        assert breaker.policy_for("svc") is code

    def test_clear_restores_the_live_circuit(self, make_breaker: MakeBreaker) -> None:
        """After clear_policy the live circuit opens at the code's threshold again."""
        breaker = make_breaker(max_failures=3)
        fail(breaker)
        breaker.set_policy("svc", ServicePolicy(max_failures=100))
        breaker.clear_policy("svc")
        fail(breaker, times=2)
        assert breaker.state("svc").state is CircuitState.OPEN


class TestPolicyChangedEvent:
    def test_event_names_source_and_changed_fields(self, make_breaker: MakeBreaker) -> None:
        """POLICY_CHANGED carries the service, the source and the changed fields as reason text."""
        breaker = make_breaker(max_failures=5, open_seconds=30, max_open_seconds=300)
        breaker.execute("svc", lambda: None)
        with capture_events(breaker) as events:
            breaker.set_policy("svc", ServicePolicy(max_failures=3, open_seconds=20, max_open_seconds=300))
        changed = [e for e in events if e.kind is EventKind.POLICY_CHANGED]
        assert len(changed) == 1
        event = changed[0]
        assert (event.service, event.source) == ("svc", "process")
        assert event.reason == "max_failures: 5 -> 3, open_seconds: 30 -> 20"
        assert event.state is CircuitState.CLOSED

    def test_clear_event_says_code(self, make_breaker: MakeBreaker) -> None:
        """Clearing an override emits POLICY_CHANGED with source "code" and the fields going back."""
        breaker = make_breaker(max_failures=5)
        breaker.set_policy("svc", ServicePolicy(max_failures=3))
        with capture_events(breaker) as events:
            breaker.clear_policy("svc")
        assert [(e.kind, e.source, e.reason) for e in events] == [
            (EventKind.POLICY_CHANGED, "code", "max_failures: 3 -> 5")
        ]

    def test_one_info_line(self, make_breaker: MakeBreaker, caplog: pytest.LogCaptureFixture) -> None:
        """A change logs one INFO line naming the service, the source and the fields."""
        breaker = make_breaker(max_failures=5)
        with caplog.at_level(logging.INFO, logger="tnm.circuit"):
            breaker.set_policy("svc", ServicePolicy(max_failures=3))
        lines = [r for r in caplog.records if "policy" in r.getMessage()]
        assert len(lines) == 1
        assert lines[0].levelno == logging.INFO
        assert "'svc'" in lines[0].getMessage()
        assert "max_failures: 5 -> 3" in lines[0].getMessage()


class TestRedisProcessOverride:
    def test_process_override_governs_this_process(self, make_redis_breaker: MakeBreaker) -> None:
        """On Redis, set_policy(max_failures=2) makes this process's failures open the circuit at 2."""
        breaker = make_redis_breaker(max_failures=10)
        breaker.execute("svc", lambda: None)
        breaker.set_policy("svc", ServicePolicy(max_failures=2))
        assert breaker.policy_source("svc") == "process"
        fail(breaker, times=2)
        assert breaker.state("svc").state is CircuitState.OPEN
