"""``AsyncCircuitBreakerTransport``: the breaker in front of any async httpx transport."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TypeVar

import httpx

from tnm.circuit import CircuitBreaker, CircuitOpenError, ReturnValuePolicyError
from tnm.circuit.http import DEFAULT_FAILURE_STATUSES, status_policy

from ._options import asked_wait, check_breaker, counted_response, refuse
from ._service import ServiceName, service_namer

__all__ = ["AsyncCircuitBreakerTransport"]

T = TypeVar("T", bound="AsyncCircuitBreakerTransport")


class AsyncCircuitBreakerTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient`` transport that sends each request through its upstream's circuit.

    ``httpx.AsyncClient(transport=AsyncCircuitBreakerTransport(breaker))``. Options and
    behaviour are those of ``CircuitBreakerTransport``, with ``httpx.AsyncHTTPTransport()``
    as the default inner transport. The breaker is used through its async path, so a
    shared (Redis) backend never blocks the event loop. A request cancelled while in
    flight has no outcome; if it was a half-open trial, its permit goes back at once.
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        service: str | ServiceName | None = None,
        failure_statuses: Iterable[int] = DEFAULT_FAILURE_STATUSES,
    ) -> None:
        self.breaker = check_breaker(breaker)
        self.transport: httpx.AsyncBaseTransport = (
            httpx.AsyncHTTPTransport() if transport is None else transport
        )
        self._name_of = service_namer(service)
        self._acall = self.breaker.caller(on_retval_policy=status_policy(failure_statuses)).acall

    def __repr__(self) -> str:
        return f"AsyncCircuitBreakerTransport({self.breaker!r}, transport={self.transport!r})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        service = self._name_of(request)
        if service is None:
            return await self.transport.handle_async_request(request)
        try:
            return await self._acall(service, self.transport.handle_async_request, request)
        except ReturnValuePolicyError as error:
            response = counted_response(error)
            wait = asked_wait(response)
            if wait:  # if this failure opened the circuit, it stays open as long as the server asked
                await self.breaker.ahold_open(service, wait)
            return response
        except CircuitOpenError as error:
            refuse(error, request)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self: T) -> T:
        await self.transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.transport.__aexit__(exc_type, exc_value, traceback)
