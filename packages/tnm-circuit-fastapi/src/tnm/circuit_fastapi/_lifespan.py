"""The lifespan that owns the breaker's connections for the life of the app."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import Any

from tnm.circuit import CircuitBreaker, CircuitError, InvalidConfigTypeError

__all__ = ["STATE_KEY", "breaker_lifespan"]

logger = logging.getLogger("tnm.circuit")

STATE_KEY = "tnm_circuit_breaker"
"""Key of the breaker in the lifespan state (``request.state.tnm_circuit_breaker``)."""

Lifespan = (
    Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]
    | Callable[[Any], AsyncIterator[Mapping[str, Any] | None]]
    | Callable[[Any], Iterator[Mapping[str, Any] | None]]
)
"""Every form of lifespan FastAPI takes: an async context manager factory (what
``@asynccontextmanager`` makes), a bare async generator function, or a generator function."""


def check_breaker(breaker: object) -> None:
    """Refuse, at the call that wires it, a ``breaker`` that is not one."""
    if not isinstance(breaker, CircuitBreaker):
        raise InvalidConfigTypeError(
            "breaker",
            f"must be a CircuitBreaker (from tnm.circuit), got {type(breaker).__name__}: {breaker!r}",
        )


def _as_async_context(lifespan: Lifespan) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """The app's lifespan as an async context manager factory, whichever form it was given in."""
    if inspect.isasyncgenfunction(lifespan):
        return asynccontextmanager(lifespan)
    if inspect.isgeneratorfunction(lifespan):
        sync_context = contextmanager(lifespan)

        @asynccontextmanager
        async def run(app: Any) -> AsyncIterator[Any]:
            # As Starlette runs a generator lifespan: in the event loop's thread.
            with sync_context(app) as state:
                yield state

        return run
    return lifespan  # type: ignore[return-value]


def breaker_lifespan(
    breaker: CircuitBreaker, lifespan: Lifespan | None = None, *, start_degraded: bool = False
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that initializes ``breaker`` and closes it.

    The breaker is initialized at startup without blocking the event loop and is put
    in the lifespan state, where ``get_circuit_breaker`` / ``BreakerDep`` find it. If
    ``lifespan`` (the app's own) is given it runs inside, and its state is merged in;
    it may take any form FastAPI accepts: a function decorated with
    ``@asynccontextmanager``, a bare async generator function, or a generator function.
    If the store is unreachable at startup, startup fails with the ``CircuitError``,
    unless ``start_degraded=True``: then the app starts and calls are decided per
    process until the store is back.
    """

    check_breaker(breaker)
    if lifespan is not None and not callable(lifespan):
        raise InvalidConfigTypeError("lifespan", f"must be your app's lifespan function, got {lifespan!r}")
    inner_lifespan = None if lifespan is None else _as_async_context(lifespan)

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            await breaker.ainitialize()
        except CircuitError as exc:
            if not start_degraded:
                raise
            logger.warning("starting with a degraded circuit store: %s", exc)
        try:
            if inner_lifespan is None:
                yield {STATE_KEY: breaker}
            else:
                async with inner_lifespan(app) as inner:
                    yield {**(inner or {}), STATE_KEY: breaker}
        finally:
            await breaker.aclose()

    return run
