"""``AsyncCircuitBreakerTransport``: the breaker in front of any async httpx transport."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TypeVar

import httpx

from tnm.circuit import CircuitBreaker, CircuitOpenError, ReturnValuePolicyError

from ._options import asked_wait, check_breaker, counted_response, refuse
from ._service import ServiceName, service_namer
from ._statuses import DEFAULT_FAILURE_STATUSES, status_policy

__all__ = ["AsyncCircuitBreakerTransport"]

T = TypeVar("T", bound="AsyncCircuitBreakerTransport")
Send = Callable[[httpx.Request], Awaitable[httpx.Response]]


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
        self._retval_policy = status_policy(failure_statuses)
        self._sends: dict[str, Send] = {}

    def __repr__(self) -> str:
        return f"AsyncCircuitBreakerTransport({self.breaker!r}, transport={self.transport!r})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        service = self._name_of(request)
        if service is None:
            return await self.transport.handle_async_request(request)
        send = self._sends.get(service) or await self._guard(service)
        try:
            return await send(request)
        except ReturnValuePolicyError as error:
            response = counted_response(error)
            wait = asked_wait(response)
            if wait:  # if this failure opened the circuit, it stays open as long as the server asked
                await self.breaker.ahold_open(service, wait)
            return response
        except CircuitOpenError as error:
            refuse(error, request)

    async def _guard(self, service: str) -> Send:
        """The inner transport's send, protected by ``service``'s circuit (built once per service)."""
        inner = self.transport.handle_async_request
        if not inspect.iscoroutinefunction(inner):
            # ``protect`` picks its async path from the function: give it a coroutine function.
            async def inner(request: httpx.Request) -> httpx.Response:
                return await self.transport.handle_async_request(request)

        send: Send = self.breaker.protect(service, on_retval_policy=self._retval_policy)(inner)
        self._sends[service] = send
        return send

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
