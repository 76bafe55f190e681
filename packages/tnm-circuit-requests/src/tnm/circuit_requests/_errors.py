"""The one error the adapter adds::

    requests.ConnectionError          tnm.circuit.CircuitOpenError
                   \\                         /
                    CircuitOpenRequestError        the request was refused, never sent

Everything else reaching the caller (requests' own errors, responses) is requests', unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
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
        request: requests.PreparedRequest | None = None,
    ) -> None:
        requests.ConnectionError.__init__(self, service, request=request)
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

    # OSError (a base of requests' errors) comes first in the MRO: keep the circuit's message.
    __str__ = CircuitOpenError.__str__

    @classmethod
    def from_open_error(
        cls, error: CircuitOpenError, request: requests.PreparedRequest
    ) -> CircuitOpenRequestError:
        """The rejection of ``request`` carrying ``error``'s circuit fields."""
        return cls(*error.args, request=request)
