"""Dependencies: the app's breaker, and a guard that answers 503 before the endpoint runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from tnm.circuit import CircuitBreaker, InvalidConfigError, InvalidConfigTypeError

from ._lifespan import STATE_KEY

__all__ = ["BreakerDep", "get_circuit_breaker", "require_available"]


async def get_circuit_breaker(request: Request) -> CircuitBreaker:
    """The breaker of the app handling ``request`` (set up by ``breaker_lifespan`` or ``install``)."""
    breaker = getattr(request.state, STATE_KEY, None) or getattr(request.app.state, STATE_KEY, None)
    if not isinstance(breaker, CircuitBreaker):
        raise LookupError(
            "no circuit breaker on this app: create it with "
            "FastAPI(lifespan=breaker_lifespan(breaker)) or call install(app, breaker)"
        )
    return breaker


BreakerDep = Annotated[CircuitBreaker, Depends(get_circuit_breaker)]
"""Use as an endpoint parameter type: ``async def search(breaker: BreakerDep): ...``."""


def require_available(service: str) -> Callable[[CircuitBreaker], Awaitable[None]]:
    """A dependency that rejects the request with 503 while ``service``'s circuit is open.

    ``dependencies=[Depends(require_available("search"))]``. It takes no half-open trial
    permit: while half-open, requests go through and the protected call inside the
    endpoint takes (or is refused) the permit under the service's policy. A ``service``
    that is not a non-empty str is refused here (field ``service``), not at request time.
    """
    if not isinstance(service, str):
        raise InvalidConfigTypeError("service", f"must be a str naming the service, got {service!r}")
    if not service.strip():
        raise InvalidConfigError("service", "must not be blank")

    async def dependency(breaker: BreakerDep) -> None:
        if not await breaker.ais_available(service):
            raise breaker.open_error(service)

    dependency.__name__ = f"require_available_{service}"
    return dependency
