"""The lifespan that owns the breaker's connections for the life of the app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from tnm.circuit import CircuitBreaker, CircuitError

__all__ = ["STATE_KEY", "breaker_lifespan"]

logger = logging.getLogger("tnm.circuit")

STATE_KEY = "tnm_circuit_breaker"
"""Key of the breaker in the lifespan state (``request.state.tnm_circuit_breaker``)."""

Lifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]


def breaker_lifespan(
    breaker: CircuitBreaker, lifespan: Lifespan | None = None, *, start_degraded: bool = False
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that initializes ``breaker`` and closes it.

    The breaker is initialized at startup without blocking the event loop and is put
    in the lifespan state, where ``get_circuit_breaker`` / ``BreakerDep`` find it. If
    ``lifespan`` (the app's own) is given it runs inside, and its state is merged in.
    If the store is unreachable at startup, startup fails with the ``CircuitError``,
    unless ``start_degraded=True``: then the app starts and calls are decided per
    process until the store is back.
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            await breaker.ainitialize()
        except CircuitError as exc:
            if not start_degraded:
                raise
            logger.warning("starting with a degraded circuit store: %s", exc)
        try:
            if lifespan is None:
                yield {STATE_KEY: breaker}
            else:
                async with lifespan(app) as inner:
                    yield {**(inner or {}), STATE_KEY: breaker}
        finally:
            await breaker.aclose()

    return run
