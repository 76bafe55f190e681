"""The one error the transports add::

    httpx.TransportError          tnm.circuit.CircuitOpenError
              \\                         /
               CircuitOpenRequestError        the request was refused, never sent

Everything else reaching the caller (httpx's own errors, responses) is the inner
transport's, unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from tnm.circuit import CircuitOpenError

__all__ = ["CircuitOpenRequestError"]


class CircuitOpenRequestError(httpx.TransportError, CircuitOpenError):
    """The upstream's circuit is open: the request was refused without touching the network.

    It is an ``httpx.TransportError``, so code that already handles httpx's transport
    errors (``except httpx.TransportError``, retry libraries) handles it too; ``.request``
    is the refused request. It is also a ``tnm.circuit.CircuitOpenError`` with
    ``.service``, ``.retry_after`` (seconds until a trial request may go, ``None`` while an
    operator holds the circuit open) and ``.last_failure``. Its message names the service,
    never the URL.
    """

    def __init__(
        self,
        service: str,
        retry_after: float | None = None,
        last_failure: Mapping[str, Any] | None = None,
        state: Any = "open",
        failures: int = 0,
        max_failures: int = 0,
        window_seconds: float = 0.0,
        /,
        *figures: Any,
        request: httpx.Request | None = None,
    ) -> None:
        httpx.TransportError.__init__(self, service, request=request)
        # The circuit's fields live in ``args``, where CircuitOpenError reads (and pickles) them;
        # ``figures`` are the later ones (opened_by, calls, failure_rate, slow_call_rate).
        self.args = (
            service,
            retry_after,
            last_failure,
            state,
            failures,
            max_failures,
            window_seconds,
            *figures,
        )

    @classmethod
    def from_open_error(cls, error: CircuitOpenError, request: httpx.Request) -> CircuitOpenRequestError:
        """The rejection of ``request`` carrying ``error``'s circuit fields."""
        return cls(*error.args, request=request)
