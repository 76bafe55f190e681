"""Exception handlers: CircuitOpenError -> 503 with Retry-After, ReturnValuePolicyError -> 502."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tnm.circuit import CircuitBackendError, CircuitOpenError, ReturnValuePolicyError

__all__ = ["add_exception_handlers", "open_error_response"]


def open_error_response(exc: CircuitOpenError, *, expose_reasons: bool = False) -> JSONResponse:
    """``503 Service Unavailable``: ``detail``, ``service``, ``retry_after`` (seconds, to the
    millisecond; ``null`` while an operator holds the circuit open); ``Retry-After`` in
    whole seconds, rounded up (absent while an operator holds the circuit open).

    The last failure's reason is included only with ``expose_reasons=True``: reasons may
    name hosts or carry secrets.
    """
    body: dict[str, Any] = {
        "detail": f"{exc.service} is temporarily unavailable",
        "service": exc.service,
        "retry_after": None if exc.retry_after is None else round(exc.retry_after, 3),
    }
    if expose_reasons and exc.last_failure is not None:
        body["reason"] = exc.last_failure.get("reason")
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(0, math.ceil(exc.retry_after)))
    return JSONResponse(body, status_code=503, headers=headers)


def add_exception_handlers(app: FastAPI, *, expose_reasons: bool = False, retval_status: int = 502) -> None:
    """Map the breaker's errors to HTTP responses on ``app``.

    ``CircuitOpenError`` -> 503 (see ``open_error_response``); ``ReturnValuePolicyError``
    -> ``retval_status`` (502 Bad Gateway by default: the upstream answered badly);
    ``CircuitBackendError`` (only raised with ``on_storage_error="raise"``) -> 503.
    """

    async def on_open(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CircuitOpenError)
        return open_error_response(exc, expose_reasons=expose_reasons)

    async def on_retval(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ReturnValuePolicyError)
        body: dict[str, Any] = {
            "detail": f"{exc.service} returned an unusable response",
            "service": exc.service,
        }
        if expose_reasons:
            body["reason"] = exc.reason
        return JSONResponse(body, status_code=retval_status)

    async def on_backend(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "circuit state store unavailable"}, status_code=503)

    app.add_exception_handler(CircuitOpenError, on_open)
    app.add_exception_handler(ReturnValuePolicyError, on_retval)
    app.add_exception_handler(CircuitBackendError, on_backend)
