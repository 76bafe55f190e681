"""protect and execute count the outcome of every async callable, however it is spelled."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy


class AsyncCallable:
    """An object whose ``__call__`` is an ``async def``."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, fail: bool = True) -> str:
        self.calls += 1
        if fail:
            raise ConnectionError("down")
        return "ok"


async def _fetch(fail: bool) -> str:
    if fail:
        raise ConnectionError("down")
    return "ok"


def _returns_a_coroutine(fail: bool) -> Awaitable[str]:
    """What another library's decorator often makes: a plain function returning a coroutine."""
    return _fetch(fail)


def _breaker() -> CircuitBreaker:
    return CircuitBreaker(default_policy=ServicePolicy(max_failures=2, open_seconds=60))


CALLABLES: dict[str, Callable[[], Callable[..., Any]]] = {
    "async __call__": AsyncCallable,
    "partial of an async def": lambda: functools.partial(_fetch),
    "partial of an async __call__": lambda: functools.partial(AsyncCallable()),
    "plain def returning a coroutine": lambda: _returns_a_coroutine,
}


class TestProtectAsyncCallables:
    @pytest.mark.parametrize("kind", sorted(CALLABLES))
    def test_failures_of_async_callables_open_the_circuit(self, kind: str) -> None:
        """Failures of an async callable that is not an ``async def`` are counted and open the circuit."""
        breaker = _breaker()
        guarded = breaker.protect("svc")(CALLABLES[kind]())

        async def main() -> None:
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    await guarded(True)
            with pytest.raises(CircuitOpenError):
                await guarded(True)

        asyncio.run(main())
        assert breaker.state("svc").state is CircuitState.OPEN

    @pytest.mark.parametrize("kind", ["async __call__", "partial of an async def"])
    def test_known_async_callables_get_a_coroutine_function(self, kind: str) -> None:
        """A callable whose ``__call__`` or wrapped function is ``async def`` gets a coroutine function."""
        guarded = _breaker().protect("svc")(CALLABLES[kind]())
        assert inspect.iscoroutinefunction(guarded)
        assert asyncio.run(guarded(False)) == "ok"

    def test_success_of_an_awaitable_result_is_recorded_when_awaited(self) -> None:
        """A success closes a half-open circuit only once the returned awaitable completed."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=1, open_seconds=0))
        guarded = breaker.protect("svc")(_returns_a_coroutine)
        breaker.record_failure("svc", "boom")
        pending = guarded(False)
        assert breaker.state("svc").state is CircuitState.HALF_OPEN
        assert asyncio.run(pending) == "ok"  # type: ignore[arg-type]
        assert breaker.state("svc").state is CircuitState.CLOSED

    def test_an_awaitable_after_plain_results_is_still_awaited_for_its_outcome(self) -> None:
        """A function that returned plain values (of several types) and then returns a
        coroutine: its failure is counted when the coroutine fails, not when it is made."""
        breaker = _breaker()
        results: list[Any] = [None, "plain", 1, _fetch, _fetch]
        guarded = breaker.protect("svc")(lambda: results.pop(0)(True) if len(results) < 3 else results.pop(0))
        assert [guarded(), guarded(), guarded()] == [None, "plain", 1]
        for failures in (1, 2):
            pending = guarded()
            assert inspect.isawaitable(pending)
            assert breaker.state("svc").failures == failures - 1
            with pytest.raises(ConnectionError):
                asyncio.run(pending)
            assert breaker.state("svc").failures == failures
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_a_class_is_not_taken_for_a_coroutine_function(self) -> None:
        """Protecting a class (its instances are built synchronously) keeps the sync wrapper."""
        guarded = _breaker().protect("svc")(AsyncCallable)
        assert not inspect.iscoroutinefunction(guarded)
        assert isinstance(guarded(), AsyncCallable)


class TestExecuteAsyncCallables:
    def test_execute_counts_the_failure_of_a_returned_awaitable(self) -> None:
        """``execute`` given an async callable counts the failure when the awaitable it returns fails."""
        breaker = _breaker()

        async def main() -> None:
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    await breaker.execute("svc", AsyncCallable(), True)

        asyncio.run(main())
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_execute_awaits_an_awaitable_after_plain_results(self) -> None:
        """Plain results of several types, then a coroutine: its failure counts when it fails."""
        breaker = _breaker()
        for plain in (None, "plain", 1):
            assert breaker.execute("svc", lambda value=plain: value) == plain
        for failures in (1, 2):
            pending = breaker.execute("svc", _returns_a_coroutine, True)
            assert breaker.state("svc").failures == failures - 1
            with pytest.raises(ConnectionError):
                asyncio.run(pending)  # type: ignore[arg-type]
            assert breaker.state("svc").failures == failures
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_execute_async_counts_async_call_objects(self) -> None:
        """``execute_async`` counts the failures of an object with an ``async def __call__``."""
        breaker = _breaker()

        async def main() -> None:
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    await breaker.execute_async("svc", AsyncCallable(), True)

        asyncio.run(main())
        assert breaker.state("svc").state is CircuitState.OPEN
