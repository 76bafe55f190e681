"""What both transports share: checking their options and settling a guarded send's outcome."""

from __future__ import annotations

import time
from typing import NoReturn

import httpx

from tnm.circuit import CircuitBreaker, CircuitOpenError, InvalidConfigTypeError, ReturnValuePolicyError
from tnm.circuit.http import retry_after_seconds

from ._errors import CircuitOpenRequestError

__all__ = ["check_breaker", "counted_response", "refuse"]


def check_breaker(breaker: object) -> CircuitBreaker:
    if not isinstance(breaker, CircuitBreaker):
        raise InvalidConfigTypeError("breaker", f"must be a tnm.circuit.CircuitBreaker, got {breaker!r}")
    return breaker


ASKS_TO_WAIT = frozenset({429, 503})
"""Statuses whose ``Retry-After`` the circuit honours (when the status is counted)."""


def asked_wait(response: httpx.Response) -> float | None:
    """Seconds a counted 503 or 429 asked clients to stay away (``Retry-After``), if it did."""
    if response.status_code not in ASKS_TO_WAIT:
        return None
    return retry_after_seconds(response.headers.get("retry-after"), time.time())


def counted_response(error: ReturnValuePolicyError) -> httpx.Response:
    """The response behind a failure status: counted by the breaker, returned to the caller as is."""
    response = error.retval
    if not isinstance(response, httpx.Response):  # not ours: the inner transport raised it
        raise error
    return response


def refuse(error: CircuitOpenError, request: httpx.Request) -> NoReturn:
    """Raise the rejection of ``request`` (an inner transport's own rejection passes as it is)."""
    if isinstance(error, CircuitOpenRequestError):
        raise error
    raise CircuitOpenRequestError.from_open_error(error, request) from None
