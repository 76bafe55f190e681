"""One call to wire a breaker into an app."""

from __future__ import annotations

from fastapi import FastAPI

from tnm.circuit import CircuitBreaker

from ._handlers import add_exception_handlers
from ._lifespan import STATE_KEY, breaker_lifespan, check_breaker

__all__ = ["install"]


def install(
    app: FastAPI,
    breaker: CircuitBreaker,
    *,
    expose_reasons: bool = False,
    retval_status: int = 502,
    start_degraded: bool = False,
) -> None:
    """Give ``app`` its breaker: a lifespan wrapping the app's own, and the exception handlers.

    A ``breaker`` that is not a ``CircuitBreaker`` is refused here (``InvalidConfigTypeError``,
    field ``breaker``), not at start-up.
    """
    check_breaker(breaker)
    app.router.lifespan_context = breaker_lifespan(
        breaker, app.router.lifespan_context, start_degraded=start_degraded
    )
    # Also on app.state, for servers and test clients that do not pass lifespan state.
    setattr(app.state, STATE_KEY, breaker)
    add_exception_handlers(app, expose_reasons=expose_reasons, retval_status=retval_status)
