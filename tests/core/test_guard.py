"""breaker.guard(service): a block of code as one protected call (with and async with)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, EventKind, ServicePolicy
from tnm.circuit.testing import ManualClock, capture_events

MakeBreaker = Callable[..., CircuitBreaker]


class TestSyncGuard:
    def test_exception_counts_and_propagates_unchanged(self, make_breaker: MakeBreaker) -> None:
        """An exception leaving the block is counted and reaches the caller as raised."""
        breaker = make_breaker(max_failures=2)
        error = ConnectionError("down")
        for _ in range(2):
            with pytest.raises(ConnectionError) as info, breaker.guard("pay"):
                raise error
            assert info.value is error
        assert breaker.state("pay").state is CircuitState.OPEN

    def test_rejected_on_entry_and_block_not_run(self, make_breaker: MakeBreaker) -> None:
        """An open circuit raises CircuitOpenError on entry; the block never runs."""
        breaker = make_breaker(max_failures=1)
        breaker.force_open("pay")
        ran = []
        with pytest.raises(CircuitOpenError), breaker.guard("pay"):
            ran.append(1)
        assert ran == []

    def test_clean_exit_is_a_success(self, make_breaker: MakeBreaker) -> None:
        """A clean exit resets the failure count like a successful call."""
        breaker = make_breaker(max_failures=2)
        with pytest.raises(OSError), breaker.guard("pay"):
            raise OSError
        assert breaker.state("pay").failures == 1
        with breaker.guard("pay"):
            pass
        assert breaker.state("pay").failures == 0

    def test_half_open_takes_a_trial_permit(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Half-open: the block holds the trial permit (a second block is rejected); a clean exit closes."""
        breaker = make_breaker(max_failures=1, open_seconds=5)
        with pytest.raises(OSError), breaker.guard("pay"):
            raise OSError
        clock.advance(5)
        with breaker.guard("pay"):
            assert breaker.state("pay").trials_in_flight == 1
            with pytest.raises(CircuitOpenError), breaker.guard("pay"):
                pass
        assert breaker.state("pay").state is CircuitState.CLOSED

    def test_interrupt_gives_the_permit_back(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A KeyboardInterrupt leaving a trial block records nothing and frees the permit."""
        breaker = make_breaker(max_failures=1, open_seconds=5)
        breaker.record_failure("pay")
        clock.advance(5)
        with pytest.raises(KeyboardInterrupt), breaker.guard("pay"):
            raise KeyboardInterrupt
        snap = breaker.state("pay")
        assert (snap.state, snap.trials_in_flight) == (CircuitState.HALF_OPEN, 0)

    def test_rules_as_keyword_arguments(self, make_breaker: MakeBreaker) -> None:
        """on_exceptions, ignore_exceptions and failure_reason apply to the block as to protect."""
        breaker = make_breaker(max_failures=1)
        with pytest.raises(KeyError), breaker.guard("pay", on_exceptions=[OSError]):
            raise KeyError
        with pytest.raises(OSError), breaker.guard("pay", ignore_exceptions=[lambda e: "skip" in str(e)]):
            raise OSError("skip me")
        assert breaker.is_available("pay")
        with pytest.raises(OSError), breaker.guard("pay", failure_reason="payments down"):
            raise OSError("secret")
        assert breaker.last_failure("pay")["reason"] == "payments down"  # type: ignore[index]

    def test_slow_block_counts_as_slow(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A slow-call policy times the block: a slow block is a slow call in the rate window."""
        breaker = make_breaker(
            max_failures=None, slow_call_seconds=1, slow_call_rate_threshold=0.5, minimum_calls=2
        )
        with breaker.guard("pay"):
            pass
        with breaker.guard("pay"):
            clock.advance(2)
        assert breaker.state("pay").state is CircuitState.OPEN

    def test_reusable_for_blocks_in_turn(self, make_breaker: MakeBreaker) -> None:
        """One guard object serves several blocks one after the other."""
        breaker = make_breaker(max_failures=3)
        guard = breaker.guard("pay")
        for _ in range(2):
            with pytest.raises(OSError), guard:
                raise OSError
        assert breaker.state("pay").failures == 2

    def test_observe_mode_runs_the_block_unrecorded(self, make_breaker: MakeBreaker) -> None:
        """In observe mode a block the circuit would reject runs, and listeners see would_reject."""
        breaker = make_breaker(max_failures=1, mode="observe")
        breaker.record_failure("pay")
        with capture_events(breaker) as events, pytest.raises(OSError), breaker.guard("pay"):
            raise OSError
        assert [e.kind for e in events] == [EventKind.WOULD_REJECT]


class TestAsyncGuard:
    def test_async_with_counts_and_rejects(self, make_breaker: MakeBreaker) -> None:
        """async with admits, counts an exception, and raises CircuitOpenError once open."""
        breaker = make_breaker(max_failures=1)

        async def main() -> None:
            with pytest.raises(TimeoutError):
                async with breaker.guard("pay"):
                    raise TimeoutError
            with pytest.raises(CircuitOpenError):
                async with breaker.guard("pay"):
                    pass

        asyncio.run(main())

    def test_cancellation_gives_the_permit_back(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A cancelled trial block records nothing and frees its permit."""
        breaker = make_breaker(max_failures=1, open_seconds=5)
        breaker.record_failure("pay")
        clock.advance(5)

        async def block(started: asyncio.Event) -> None:
            async with breaker.guard("pay"):
                started.set()
                await asyncio.sleep(3600)

        async def main() -> None:
            started = asyncio.Event()
            task = asyncio.create_task(block(started))
            await asyncio.wait_for(started.wait(), 10)
            assert breaker.state("pay").trials_in_flight == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        snap = breaker.state("pay")
        assert (snap.state, snap.trials_in_flight) == (CircuitState.HALF_OPEN, 0)

    def test_clean_async_exit_closes_half_open(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A clean async exit from a trial block closes the circuit."""
        breaker = make_breaker(max_failures=1, open_seconds=5)
        breaker.record_failure("pay")
        clock.advance(5)

        async def main() -> None:
            async with breaker.guard("pay"):
                await asyncio.sleep(0)

        asyncio.run(main())
        assert breaker.state("pay").state is CircuitState.CLOSED


class TestGuardPolicy:
    def test_guard_takes_service_policy(self) -> None:
        """The guard follows the service's own policy."""
        breaker = CircuitBreaker(service_policies={"pay": ServicePolicy(max_failures=1)})
        with pytest.raises(OSError), breaker.guard("pay"):
            raise OSError
        assert not breaker.is_available("pay")
