"""The one error the middleware adds::

    aiohttp.ClientConnectionError          tnm.circuit.CircuitOpenError
                        \\                         /
                         CircuitOpenClientError        the request was refused, never sent

Everything else reaching the caller (aiohttp's own errors, responses) is aiohttp's, unchanged.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tnm.circuit import CircuitOpenError

__all__ = ["CircuitOpenClientError"]


class CircuitOpenClientError(aiohttp.ClientConnectionError, CircuitOpenError):
    """The upstream's circuit is open: the request was refused without touching the network.

    It is an ``aiohttp.ClientConnectionError``, so code that already handles a connection
    failure (``except aiohttp.ClientConnectionError``, ``except aiohttp.ClientError``, retry
    helpers) handles it too; ``.request`` is the refused ``aiohttp.ClientRequest``. It is
    also a ``tnm.circuit.CircuitOpenError`` with ``.service``, ``.retry_after`` (seconds
    until a trial request may go, ``None`` while an operator holds the circuit open) and
    ``.last_failure``. Its message names the service, never the URL. It pickles with the
    circuit's fields (without the request).
    """

    request: aiohttp.ClientRequest | None

    def __init__(self, service: str, /, *fields: Any, request: aiohttp.ClientRequest | None = None) -> None:
        """``service`` and ``fields`` are CircuitOpenError's, positional (``retry_after``, ...);
        ``request`` is the refused request."""
        super().__init__(service, *fields)  # in ``args``, where CircuitOpenError reads (and pickles) them
        self.request = request

    __str__ = CircuitOpenError.__str__

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args)

    @classmethod
    def from_open_error(
        cls, error: CircuitOpenError, request: aiohttp.ClientRequest
    ) -> CircuitOpenClientError:
        """The rejection of ``request`` carrying ``error``'s circuit fields."""
        return cls(*error.args, request=request)
