"""CircuitBreaker.caller(): calls through circuits named per call, nothing kept per service."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tnm.circuit import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    InvalidConfigError,
    ReturnValuePolicy,
    ReturnValuePolicyError,
    ServicePolicy,
)
from tnm.circuit.testing import ManualClock, half_open

MakeBreaker = Callable[..., CircuitBreaker]


def boom() -> None:
    raise ConnectionError("down")


async def aboom() -> None:
    raise ConnectionError("down")


class TestCalls:
    def test_call_counts_on_the_named_circuit(self, make_breaker: MakeBreaker) -> None:
        """Failures count on the circuit named at each call; an open one refuses without calling."""
        breaker = make_breaker(max_failures=2)
        call = breaker.caller().call
        for _ in range(2):
            with pytest.raises(ConnectionError):
                call("a", boom)
        assert call("b", lambda x: x * 2, 21) == 42
        with pytest.raises(CircuitOpenError):
            call("a", lambda: pytest.fail("called"))
        assert breaker.state("b").state is CircuitState.CLOSED

    @pytest.mark.asyncio
    async def test_acall_counts_and_refuses(self, make_breaker: MakeBreaker) -> None:
        """The async twin counts failures and refuses an open circuit without awaiting the call."""
        breaker = make_breaker(max_failures=2)
        caller = breaker.caller()
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await caller.acall("a", aboom)

        async def never() -> None:
            pytest.fail("called")

        with pytest.raises(CircuitOpenError):
            await caller.acall("a", never)

    def test_overrides_apply(self, make_breaker: MakeBreaker) -> None:
        """A return-value policy given to the caller counts matching results, returned in the error."""
        breaker = make_breaker(max_failures=1)
        call = breaker.caller(on_retval_policy=ReturnValuePolicy(retval_in=[None])).call
        with pytest.raises(ReturnValuePolicyError) as caught:
            call("a", lambda: None)
        assert caught.value.retval is None
        assert breaker.state("a").state is CircuitState.OPEN

    def test_each_service_gets_its_own_policy(self, make_breaker: MakeBreaker) -> None:
        """A service with its own policy is judged by it, even through a caller made before its first call."""
        breaker = make_breaker(max_failures=5, service_policies={"strict": ServicePolicy(max_failures=1)})
        call = breaker.caller().call
        with pytest.raises(ConnectionError):
            call("strict", boom)
        assert breaker.state("strict").state is CircuitState.OPEN

    def test_bad_override_refused_naming_it(self, make_breaker: MakeBreaker) -> None:
        """A bad override is refused when the caller is made, with the field named."""
        with pytest.raises(InvalidConfigError) as caught:
            make_breaker().caller(on_exceptions=[int])  # type: ignore[list-item]
        assert caught.value.field == "on_exceptions"

    @pytest.mark.asyncio
    async def test_cancelled_trial_gives_its_permit_back(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """A half-open trial cancelled in flight returns its permit: the next call is the trial."""
        breaker = make_breaker(max_failures=1, open_seconds=10)
        caller = breaker.caller()
        half_open(breaker, "a")
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.sleep(30)

        task = asyncio.ensure_future(caller.acall("a", hang))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async def ok() -> int:
            return 1

        assert await caller.acall("a", ok) == 1
        assert breaker.state("a").state is CircuitState.CLOSED


class TestRatePolicy:
    @pytest.mark.asyncio
    async def test_async_successes_count_in_the_rate_window(self, make_breaker: MakeBreaker) -> None:
        """Under a failure-rate policy, successes through acall count: 1 failure in 10 calls stays closed."""
        breaker = make_breaker(failure_rate_threshold=0.5, minimum_calls=10, window_seconds=60)
        caller = breaker.caller()

        async def ok() -> int:
            return 1

        for _ in range(9):
            await caller.acall("a", ok)
        with pytest.raises(ConnectionError):
            await caller.acall("a", aboom)
        snapshot = breaker.state("a")
        assert snapshot.state is CircuitState.CLOSED
        assert snapshot.calls == 10


class TestNothingKept:
    def test_idle_services_are_dropped(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Services called through a caller are dropped after meta_ttl_seconds idle (unlike protect)."""
        breaker = CircuitBreaker(clock=clock, meta_ttl_seconds=60)
        call = breaker.caller().call
        for n in range(100):
            call(f"s{n}", lambda: 1)
        for step in range(2):
            clock.advance(61)
            call(f"new-{step}", lambda: 1)
        assert set(breaker.circuits()) == {"new-0", "new-1"}


class TestAdmit:
    def test_outcome_reported_later(self, make_breaker: MakeBreaker) -> None:
        """admit() lets a call start; failures reported on it count, and an open circuit refuses."""
        breaker = make_breaker(max_failures=2)
        caller = breaker.caller()
        for _ in range(2):
            caller.admit("a").failure("stream broke")
        assert breaker.state("a").last_failure == {
            "reason": "stream broke",
            "ts": pytest.approx(1.7e9, rel=0.1),
        }
        with pytest.raises(CircuitOpenError):
            caller.admit("a")

    def test_trial_permit_held_until_the_outcome(self, make_breaker: MakeBreaker) -> None:
        """In half-open, an admitted trial holds its permit until its success closes the circuit;
        a released one gives it back without an outcome."""
        breaker = make_breaker(max_failures=1, half_open_max_calls=1)
        caller = breaker.caller()
        half_open(breaker, "a")
        trial = caller.admit("a")
        with pytest.raises(CircuitOpenError):
            caller.admit("a")  # the one permit is taken
        trial.release()
        trial = caller.admit("a")
        trial.success()
        assert breaker.state("a").state is CircuitState.CLOSED

    @pytest.mark.asyncio
    async def test_async_admit(self, make_breaker: MakeBreaker) -> None:
        """aadmit() and the async outcomes behave as the sync ones."""
        breaker = make_breaker(max_failures=1)
        caller = breaker.caller()
        await (await caller.aadmit("a")).asuccess()
        await (await caller.aadmit("a")).afailure("down")
        with pytest.raises(CircuitOpenError):
            await caller.aadmit("a")


class TestProtectPins:
    def test_a_wrapper_keeps_its_circuit_only_while_it_lives(self, clock: ManualClock) -> None:
        """A protect wrapper keeps its idle circuit while it lives; once it is gone the circuit is
        dropped like any idle one, and a new wrapper shares the breaker's one circuit for the name."""
        import gc

        breaker = CircuitBreaker(
            clock=clock, meta_ttl_seconds=60, default_policy=ServicePolicy(max_failures=2)
        )
        wrapper = breaker.protect("svc")(lambda: 1)
        assert wrapper() == 1

        def idle_twice() -> None:
            for step in range(2):
                clock.advance(61)
                breaker.execute(f"other-{step}-{clock.monotonic()}", lambda: 1)

        idle_twice()
        assert "svc" in breaker.circuits()
        del wrapper
        gc.collect()
        idle_twice()
        assert "svc" not in breaker.circuits()
        again = breaker.protect("svc")(lambda: 1)
        for _ in range(2):
            breaker.record_failure("svc", "down")
        with pytest.raises(CircuitOpenError):
            again()
