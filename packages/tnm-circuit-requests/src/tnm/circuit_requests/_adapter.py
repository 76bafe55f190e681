"""``CircuitBreakerAdapter``: the breaker in front of requests' own HTTP adapter."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import NoReturn

import requests
from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE, DEFAULT_RETRIES, HTTPAdapter
from urllib3.util.retry import Retry

from tnm.circuit import CircuitBreaker, CircuitOpenError, InvalidConfigTypeError, ReturnValuePolicyError
from tnm.circuit.http import DEFAULT_FAILURE_STATUSES, retry_after_seconds, status_policy

from ._body import watch_body
from ._errors import CircuitOpenRequestError
from ._service import ServiceName, service_namer

__all__ = ["CircuitBreakerAdapter"]

ASKS_TO_WAIT = frozenset({429, 503})
"""Statuses whose ``Retry-After`` the circuit honours (when the status is counted)."""


class CircuitBreakerAdapter(HTTPAdapter):
    """A ``requests`` transport adapter that sends each request through its upstream's circuit.

    ``session.mount("https://", CircuitBreakerAdapter(breaker))`` (and ``"http://"``). It is
    requests' own ``HTTPAdapter`` (``pool_connections``, ``pool_maxsize``, ``max_retries``
    and ``pool_block`` as there) with the circuit in front: while the upstream's circuit is
    open, ``CircuitOpenRequestError`` (a ``requests.ConnectionError``) is raised and nothing
    is sent.

    The circuit is named ``service``: by default the request's ``host:port``; a fixed
    name; or ``service(request)`` of the ``PreparedRequest``. Its policy is the breaker's,
    as for any call. Failures are connection errors and timeouts (narrowed by the
    policy's ``on_exceptions`` / ``ignore_exceptions``), responses whose status is in
    ``failure_statuses`` (still returned, unchanged) and a body that breaks off while it
    is read, streamed or not. A counted 503 or 429 with ``Retry-After`` that opens the
    circuit keeps it open as long as the server asked (capped by ``max_open_seconds``).

    Nothing is kept per upstream: the circuit of a host no longer called is dropped after
    the breaker's ``meta_ttl_seconds`` like any idle one.
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        service: str | ServiceName | None = None,
        failure_statuses: Iterable[int] = DEFAULT_FAILURE_STATUSES,
        pool_connections: int = DEFAULT_POOLSIZE,
        pool_maxsize: int = DEFAULT_POOLSIZE,
        max_retries: Retry | int | None = DEFAULT_RETRIES,
        pool_block: bool = DEFAULT_POOLBLOCK,
    ) -> None:
        if not isinstance(breaker, CircuitBreaker):
            raise InvalidConfigTypeError("breaker", f"must be a tnm.circuit.CircuitBreaker, got {breaker!r}")
        self.breaker = breaker
        self._name_of = service_namer(service)
        self._call = breaker.caller(on_retval_policy=status_policy(failure_statuses)).call
        super().__init__(pool_connections, pool_maxsize, max_retries, pool_block)

    def __repr__(self) -> str:
        return f"CircuitBreakerAdapter({self.breaker!r})"

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        service = self._name_of(request)
        if service is None:
            return super().send(request, stream, timeout, verify, cert, proxies)
        try:
            response = self._call(service, super().send, request, stream, timeout, verify, cert, proxies)
        except ReturnValuePolicyError as error:
            return self._counted(error, service)
        except CircuitOpenError as error:
            _refuse(error, request)
        watch_body(response, self.breaker, service)
        return response

    def _counted(self, error: ReturnValuePolicyError, service: str) -> requests.Response:
        """The response behind a failure status: counted, returned to the caller as is."""
        response = error.retval
        if not isinstance(response, requests.Response):  # not ours: the call raised it
            raise error
        if response.status_code in ASKS_TO_WAIT:
            wait = retry_after_seconds(response.headers.get("retry-after"), time.time())
            if wait:  # if this failure opened the circuit, it stays open as long as the server asked
                self.breaker.hold_open(service, wait)
        return response


def _refuse(error: CircuitOpenError, request: requests.PreparedRequest) -> NoReturn:
    if isinstance(error, CircuitOpenRequestError):  # a nested adapter's own rejection
        raise error
    raise CircuitOpenRequestError.from_open_error(error, request) from None
