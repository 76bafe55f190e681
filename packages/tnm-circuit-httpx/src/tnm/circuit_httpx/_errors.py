"""The one error the transports add::

    httpx.TransportError          tnm.circuit.CircuitOpenError
              \\                         /
               CircuitOpenRequestError        the request was refused, never sent

Everything else reaching the caller (httpx's own errors, responses) is the inner
transport's, unchanged.
"""

from __future__ import annotations

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

    def __init__(self, service: str, /, *fields: Any, request: httpx.Request | None = None) -> None:
        """``service`` and ``fields`` are CircuitOpenError's, positional (``retry_after``, ...);
        ``request`` is the refused request."""
        httpx.TransportError.__init__(self, service, request=request)
        self.args = (service, *fields)  # where CircuitOpenError reads (and pickles) the circuit's fields

    @classmethod
    def from_open_error(cls, error: CircuitOpenError, request: httpx.Request) -> CircuitOpenRequestError:
        """The rejection of ``request`` carrying ``error``'s circuit fields."""
        return cls(*error.args, request=request)
