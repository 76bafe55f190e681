"""``CircuitBreakerTransport``: the breaker in front of any sync httpx transport."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TypeVar

import httpx

from tnm.circuit import CircuitBreaker, CircuitOpenError, ReturnValuePolicyError
from tnm.circuit.http import DEFAULT_FAILURE_STATUSES, status_policy

from ._options import asked_wait, check_breaker, counted_response, refuse
from ._service import ServiceName, service_namer

__all__ = ["CircuitBreakerTransport"]

T = TypeVar("T", bound="CircuitBreakerTransport")


class CircuitBreakerTransport(httpx.BaseTransport):
    """An ``httpx.Client`` transport that sends each request through its upstream's circuit.

    ``httpx.Client(transport=CircuitBreakerTransport(breaker))``. The request goes to
    ``transport`` (default: a new ``httpx.HTTPTransport()``; pass your own for retries,
    proxies, HTTP/2 or TLS settings) unless the circuit is open, in which case
    ``CircuitOpenRequestError`` is raised and nothing is sent.

    The circuit is named ``service``: by default the request's ``host:port``; a fixed
    name; or ``service(request)``. Its policy is the breaker's, as for any call.
    Failures are what the inner transport raises (narrowed by the policy's
    ``on_exceptions`` / ``ignore_exceptions``) and responses whose status is in
    ``failure_statuses``; such a response is still returned, unchanged. The outcome is
    known when the response headers arrive: a streamed body is never touched.

    Closing this transport closes the inner one; the breaker is yours to close.
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        transport: httpx.BaseTransport | None = None,
        service: str | ServiceName | None = None,
        failure_statuses: Iterable[int] = DEFAULT_FAILURE_STATUSES,
    ) -> None:
        self.breaker = check_breaker(breaker)
        self.transport: httpx.BaseTransport = httpx.HTTPTransport() if transport is None else transport
        self._name_of = service_namer(service)
        # One caller for every upstream: nothing is kept per host, so the circuit of a host
        # no longer called is dropped after the breaker's meta_ttl_seconds.
        self._call = self.breaker.caller(on_retval_policy=status_policy(failure_statuses)).call

    def __repr__(self) -> str:
        return f"CircuitBreakerTransport({self.breaker!r}, transport={self.transport!r})"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        service = self._name_of(request)
        if service is None:
            return self.transport.handle_request(request)
        try:
            return self._call(service, self.transport.handle_request, request)
        except ReturnValuePolicyError as error:
            response = counted_response(error)
            wait = asked_wait(response)
            if wait:  # if this failure opened the circuit, it stays open as long as the server asked
                self.breaker.hold_open(service, wait)
            return response
        except CircuitOpenError as error:
            refuse(error, request)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self: T) -> T:
        self.transport.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.transport.__exit__(exc_type, exc_value, traceback)
