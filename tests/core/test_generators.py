"""protect on generator and async-generator functions: the iteration is the call."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState
from tnm.circuit.testing import ManualClock

MakeBreaker = Callable[..., CircuitBreaker]


def collect(agen: AsyncIterator[int]) -> list[int]:
    async def run() -> list[int]:
        return [item async for item in agen]

    return asyncio.run(run())


class TestGenerators:
    def test_still_a_generator_function(self, make_breaker: MakeBreaker) -> None:
        """The wrapper is a generator function with the original's name; building one admits nothing."""
        breaker = make_breaker(max_failures=1)

        def rows() -> Iterator[int]:
            yield 1

        wrapped = breaker.protect("db")(rows)
        assert inspect.isgeneratorfunction(wrapped)
        assert wrapped.__name__ == "rows"
        breaker.force_open("db")
        wrapped()  # not iterated: no admission, no error

    def test_error_while_iterating_counts(self, make_breaker: MakeBreaker) -> None:
        """An error raised while iterating is counted and reaches the consumer unchanged."""
        breaker = make_breaker(max_failures=1)

        @breaker.protect("db")
        def rows() -> Iterator[int]:
            yield 1
            raise ConnectionError("lost")

        gen = rows()
        assert next(gen) == 1
        with pytest.raises(ConnectionError):
            next(gen)
        assert breaker.state("db").state is CircuitState.OPEN

    def test_rejected_at_first_next(self, make_breaker: MakeBreaker) -> None:
        """An open circuit raises CircuitOpenError at the first next(); the body never runs."""
        breaker = make_breaker(max_failures=1)
        ran: list[int] = []

        @breaker.protect("db")
        def rows() -> Iterator[int]:
            ran.append(1)
            yield 1

        breaker.force_open("db")
        gen = rows()
        with pytest.raises(CircuitOpenError):
            next(gen)
        assert ran == []

    def test_exhausting_is_a_success_and_return_value_kept(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """Running out closes a half-open circuit; the generator's return value reaches yield from."""
        breaker = make_breaker(max_failures=1, open_seconds=5)

        @breaker.protect("db")
        def rows() -> Iterator[int]:
            yield 1
            yield 2
            return "done"  # type: ignore[misc]

        breaker.record_failure("db")
        clock.advance(5)

        def outer() -> Iterator[int]:
            result = yield from rows()
            assert result == "done"

        gen = outer()
        assert next(gen) == 1
        assert breaker.state("db").trials_in_flight == 1  # the permit is held while iterating
        assert list(gen) == [2]
        assert breaker.state("db").state is CircuitState.CLOSED

    def test_closing_early_is_a_success(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A consumer that breaks out early records a success and closes the inner generator."""
        breaker = make_breaker(max_failures=1, open_seconds=5)
        closed: list[bool] = []

        @breaker.protect("db")
        def rows() -> Iterator[int]:
            try:
                yield from range(100)
            finally:
                closed.append(True)

        breaker.record_failure("db")
        clock.advance(5)
        gen = rows()
        for item in gen:
            if item == 3:
                break
        gen.close()
        assert closed == [True]
        assert breaker.state("db").state is CircuitState.CLOSED

    def test_send_and_throw_are_passed_on(self, make_breaker: MakeBreaker) -> None:
        """Values sent and exceptions thrown reach the wrapped generator, as with yield from."""
        breaker = make_breaker(max_failures=5)

        @breaker.protect("db")
        def echo() -> Iterator[object]:
            received = None
            while True:
                try:
                    received = yield received
                except KeyError:
                    received = "caught"

        gen = echo()
        assert next(gen) is None
        assert gen.send("hello") == "hello"
        assert gen.throw(KeyError()) == "caught"
        gen.close()
        assert breaker.state("db").failures == 0

    def test_slow_call_times_work_up_to_first_item(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """A slow-call policy times the work up to the first item, never the consumer's time between items."""
        breaker = make_breaker(
            max_failures=None, slow_call_seconds=1, slow_call_rate_threshold=0.5, minimum_calls=1
        )

        @breaker.protect("db")
        def rows(delay: float) -> Iterator[int]:
            clock.advance(delay)
            yield 1
            yield 2

        for item in rows(0.1):
            clock.advance(10)  # the consumer is slow, not the downstream
            assert item
        assert breaker.state("db").state is CircuitState.CLOSED
        assert list(rows(2)) == [1, 2]
        assert breaker.state("db").state is CircuitState.OPEN


class TestAsyncGenerators:
    def test_error_while_iterating_counts(self, make_breaker: MakeBreaker) -> None:
        """An async generator's error while iterating counts; once open, __anext__ raises CircuitOpenError."""
        breaker = make_breaker(max_failures=1)

        @breaker.protect("stream")
        async def chunks() -> AsyncIterator[int]:
            yield 1
            raise ConnectionError("reset")

        assert inspect.isasyncgenfunction(chunks)
        with pytest.raises(ConnectionError):
            collect(chunks())
        with pytest.raises(CircuitOpenError):
            collect(chunks())

    def test_exhausting_and_closing_are_successes(
        self, make_breaker: MakeBreaker, clock: ManualClock
    ) -> None:
        """Exhausting, or aclose() after a few items, records a success (closing a half-open circuit)."""
        breaker = make_breaker(max_failures=1, open_seconds=5)

        @breaker.protect("stream")
        async def chunks() -> AsyncIterator[int]:
            for i in range(100):
                yield i

        async def take_three() -> list[int]:
            gen = chunks()
            items = [await gen.__anext__() for _ in range(3)]
            assert breaker.state("stream").trials_in_flight == 1
            await gen.aclose()  # type: ignore[attr-defined]
            return items

        breaker.record_failure("stream")
        clock.advance(5)
        assert asyncio.run(take_three()) == [0, 1, 2]
        assert breaker.state("stream").state is CircuitState.CLOSED
        assert collect(chunks()) == list(range(100))

    def test_cancellation_gives_the_permit_back(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """A consumer cancelled while the generator awaits records nothing and frees the trial permit."""
        breaker = make_breaker(max_failures=1, open_seconds=5)

        @breaker.protect("stream")
        async def chunks(started: asyncio.Event) -> AsyncIterator[int]:
            started.set()
            await asyncio.sleep(3600)
            yield 1

        async def main() -> None:
            started = asyncio.Event()
            task = asyncio.create_task(chunks(started).__anext__())  # type: ignore[arg-type]
            await asyncio.wait_for(started.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        breaker.record_failure("stream")
        clock.advance(5)
        asyncio.run(main())
        snap = breaker.state("stream")
        assert (snap.state, snap.trials_in_flight) == (CircuitState.HALF_OPEN, 0)
