"""``CircuitBreakerMiddleware``: the breaker in front of every request of an aiohttp session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

from tnm.circuit import CircuitBreaker, CircuitOpenError, InvalidConfigTypeError, ReturnValuePolicyError
from tnm.circuit.http import DEFAULT_FAILURE_STATUSES, retry_after_seconds, status_policy

from ._errors import CircuitOpenClientError
from ._service import ServiceName, service_namer

__all__ = ["CircuitBreakerMiddleware"]

ASKS_TO_WAIT = frozenset({429, 503})
"""Statuses whose ``Retry-After`` the circuit honours (when the status is counted)."""


class CircuitBreakerMiddleware:
    """An aiohttp client middleware that sends each request through its upstream's circuit.

    ``aiohttp.ClientSession(middlewares=[CircuitBreakerMiddleware(breaker)])`` (aiohttp 3.12
    or later). While the upstream's circuit is open, ``CircuitOpenClientError`` (an
    ``aiohttp.ClientConnectionError``) is raised and nothing is sent.

    The circuit is named ``service``: by default the request's ``host:port``; a fixed name;
    or ``service(request)`` of the ``aiohttp.ClientRequest``. Its policy is the breaker's,
    as for any call. Failures are connection errors and timeouts (the session's own
    ``ClientTimeout`` included; narrowed by the policy's ``on_exceptions`` /
    ``ignore_exceptions``) and responses whose status is in ``failure_statuses`` (still
    returned, unchanged). The outcome is known when the response headers arrive: the body is
    never touched. A counted 503 or 429 with ``Retry-After`` that opens the circuit keeps it
    open as long as the server asked (capped by ``max_open_seconds``). Each redirect hop goes
    through its own host's circuit.

    The breaker is used through its async path, so a shared (Redis) backend never blocks the
    event loop; a request cancelled in flight gives its half-open trial permit back. Nothing
    is kept per upstream: the circuit of a host no longer called is dropped after the
    breaker's ``meta_ttl_seconds`` like any idle one.
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        service: str | ServiceName | None = None,
        failure_statuses: Iterable[int] = DEFAULT_FAILURE_STATUSES,
    ) -> None:
        if not isinstance(breaker, CircuitBreaker):
            raise InvalidConfigTypeError("breaker", f"must be a tnm.circuit.CircuitBreaker, got {breaker!r}")
        self.breaker = breaker
        self._name_of = service_namer(service)
        self._acall = breaker.caller(
            on_retval_policy=status_policy(failure_statuses, attribute="status")
        ).acall

    def __repr__(self) -> str:
        return f"CircuitBreakerMiddleware({self.breaker!r})"

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        service = self._name_of(request)
        if service is None:
            return await handler(request)
        try:
            return await self._acall(service, handler, request)
        except ReturnValuePolicyError as error:
            return await self._counted(error, service)
        except CircuitOpenError as error:
            if isinstance(error, CircuitOpenClientError):  # a nested middleware's own rejection
                raise
            raise CircuitOpenClientError.from_open_error(error, request) from None
        except asyncio.CancelledError:
            if _timed_out(request):
                # The session's total timeout cancels the request from outside the middleware
                # (aiohttp then raises TimeoutError): the upstream was too slow, so it counts.
                await self.breaker.arecord_failure(service, "TimeoutError: the request timed out")
            raise

    async def _counted(self, error: ReturnValuePolicyError, service: str) -> ClientResponse:
        """The response behind a failure status: counted, returned to the caller as is."""
        response = error.retval
        if not isinstance(response, aiohttp.ClientResponse):  # not ours: the handler raised it
            raise error
        if response.status in ASKS_TO_WAIT:
            wait = retry_after_seconds(response.headers.get("Retry-After"), time.time())
            if wait:  # if this failure opened the circuit, it stays open as long as the server asked
                await self.breaker.ahold_open(service, wait)
        return response


def _timed_out(request: ClientRequest) -> bool:
    """Did the session's timer (``ClientTimeout(total=...)``) cancel this request?"""
    return bool(getattr(getattr(request, "_timer", None), "_cancelled", False))
