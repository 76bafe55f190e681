"""The one error the adapter adds::

    requests.ConnectionError          tnm.circuit.CircuitOpenError
                   \\                         /
                    CircuitOpenRequestError        the request was refused, never sent

Everything else reaching the caller (requests' own errors, responses) is requests', unchanged.
"""

from __future__ import annotations

from typing import Any

import requests

from tnm.circuit import CircuitOpenError

__all__ = ["CircuitOpenRequestError"]


class CircuitOpenRequestError(requests.ConnectionError, CircuitOpenError):
    """The upstream's circuit is open: the request was refused without touching the network.

    It is a ``requests.ConnectionError``, so code that already handles a connection failure
    (``except requests.ConnectionError``, ``except requests.RequestException``, retry
    helpers) handles it too; ``.request`` is the refused ``PreparedRequest`` and
    ``.response`` is ``None``. It is also a ``tnm.circuit.CircuitOpenError`` with
    ``.service``, ``.retry_after`` (seconds until a trial request may go, ``None`` while an
    operator holds the circuit open) and ``.last_failure``. Its message names the service,
    never the URL.
    """

    def __init__(
        self, service: str, /, *fields: Any, request: requests.PreparedRequest | None = None
    ) -> None:
        """``service`` and ``fields`` are CircuitOpenError's, positional (``retry_after``, ...);
        ``request`` is the refused request."""
        requests.ConnectionError.__init__(self, service, request=request)
        self.args = (service, *fields)  # where CircuitOpenError reads (and pickles) the circuit's fields

    # OSError (a base of requests' errors) comes first in the MRO: keep the circuit's message.
    __str__ = CircuitOpenError.__str__

    @classmethod
    def from_open_error(
        cls, error: CircuitOpenError, request: requests.PreparedRequest
    ) -> CircuitOpenRequestError:
        """The rejection of ``request`` carrying ``error``'s circuit fields."""
        return cls(*error.args, request=request)
