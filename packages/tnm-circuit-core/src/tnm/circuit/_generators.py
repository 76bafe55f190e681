"""``protect`` on generator and async-generator functions: the iteration is the call.

The circuit admits when iteration starts (the first ``next()`` / ``__anext__()`` raises
``CircuitOpenError`` when rejected), so building a generator costs nothing. An error
raised while iterating is counted like a call's; the outcome is recorded when iteration
ends: running out, or the consumer closing it early (``break``, ``close()``, garbage
collection), is a success, and a trial permit is held until then; a cancellation or an
interrupt gives the permit back without an outcome. A slow-call policy times the
generator's own work up to its first item (or its end, if it yields none): the time the
consumer spends between items is never the downstream's.

Values sent in and exceptions thrown in are passed on to the wrapped generator, as
``yield from`` does (PEP 380).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any

from ._call import aadmit, admit, afail, afinish, finish, is_slow, record_exception, release
from ._rules import CallRules
from .backends.base import CircuitHandle
from .events import ListenerList

__all__ = ["async_generator_wrapper", "generator_wrapper"]


def generator_wrapper(
    func: Callable[..., Iterator[Any]],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., Generator[Any, Any, Any]]:
    """Wrap a generator function: each generator it returns is one call through ``circuit``."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        token = admit(circuit, rules, listeners, fallback)
        if token < 0:
            served = func(*args, **kwargs) if circuit.observe else fallback(*args, **kwargs)  # type: ignore[misc]
            return (yield from served)
        start = None if circuit.slow_after is None else circuit.monotonic()
        slow: bool | None = None  # decided at the first item
        inner: Any = func(*args, **kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                try:
                    if thrown is not None:
                        error, thrown = thrown, None
                        item = inner.throw(error)
                    else:
                        item = inner.send(sent)
                except StopIteration as stop:
                    result = stop.value
                    break
                if slow is None:
                    slow = is_slow(circuit, rules, start)
                try:
                    sent = yield item
                except GeneratorExit:
                    inner.close()
                    raise
                except BaseException as error:  # thrown in by the consumer: the generator decides
                    thrown, sent = error, None
        except GeneratorExit:  # closed early by the consumer: it had what it wanted
            finish(circuit, rules, listeners, token, None, bool(slow), judge=False)
            raise
        except Exception as exc:
            record_exception(
                circuit, rules, token, exc, is_slow(circuit, rules, start) if slow is None else slow
            )
            raise
        except BaseException:
            if token:
                release(circuit, token)
            raise
        finish(
            circuit,
            rules,
            listeners,
            token,
            None,
            is_slow(circuit, rules, start) if slow is None else slow,
            judge=False,
        )
        return result

    return run


def async_generator_wrapper(
    func: Callable[..., AsyncIterator[Any]],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """Wrap an async generator function (a streaming response's body, say): each async
    generator it returns is one call through ``circuit``; no storage I/O blocks the loop."""

    @functools.wraps(func)
    async def run(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        token = await aadmit(circuit, rules, listeners, fallback)
        if token < 0:
            served: Any = func(*args, **kwargs) if circuit.observe else fallback(*args, **kwargs)  # type: ignore[misc]
            if hasattr(served, "__aiter__"):
                async for item in served:
                    yield item
            else:
                for item in served:
                    yield item
            return
        start = None if circuit.slow_after is None else circuit.monotonic()
        slow: bool | None = None
        inner: Any = func(*args, **kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                try:
                    if thrown is not None:
                        error, thrown = thrown, None
                        item = await inner.athrow(error)
                    else:
                        item = await inner.asend(sent)
                except StopAsyncIteration:
                    break
                if slow is None:
                    slow = is_slow(circuit, rules, start)
                try:
                    sent = yield item
                except GeneratorExit:
                    await inner.aclose()
                    raise
                except BaseException as error:
                    thrown, sent = error, None
        except GeneratorExit:
            await afinish(circuit, rules, listeners, token, None, bool(slow), judge=False)
            raise
        except Exception as exc:
            await afail(circuit, rules, token, exc, is_slow(circuit, rules, start) if slow is None else slow)
            raise
        except BaseException:
            if token:
                release(circuit, token)
            raise
        await afinish(
            circuit,
            rules,
            listeners,
            token,
            None,
            is_slow(circuit, rules, start) if slow is None else slow,
            judge=False,
        )

    return run
