"""Every client adapter's rejection error carries all of CircuitOpenError's fields, through pickle."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

from tnm.circuit import CircuitOpenError


def _httpx(error: CircuitOpenError) -> CircuitOpenError:
    import httpx

    from tnm.circuit_httpx import CircuitOpenRequestError

    return CircuitOpenRequestError.from_open_error(error, httpx.Request("GET", "http://upstream"))


def _requests(error: CircuitOpenError) -> CircuitOpenError:
    import requests

    from tnm.circuit_requests import CircuitOpenRequestError

    return CircuitOpenRequestError.from_open_error(error, requests.PreparedRequest())


def _aiohttp(error: CircuitOpenError) -> CircuitOpenError:
    from tnm.circuit_aiohttp import CircuitOpenClientError

    return CircuitOpenClientError.from_open_error(error, None)  # type: ignore[arg-type]


def _grpc(error: CircuitOpenError) -> CircuitOpenError:
    from tnm.circuit_grpc import CircuitOpenRpcError

    return CircuitOpenRpcError.from_open_error(error)


class TestAdapterOpenErrors:
    @pytest.mark.parametrize("wrap", [_httpx, _requests, _aiohttp, _grpc])
    def test_opened_by_and_figures_survive(self, wrap: Callable[[CircuitOpenError], Any]) -> None:
        """opened_by, calls and the rates reach the adapter's error and survive pickling."""
        error = CircuitOpenError("api", 3.0, None, "open", 6, 0, 60.0, "failure_rate", 10, 0.6, None)
        for refusal in (wrap(error), pickle.loads(pickle.dumps(wrap(error)))):
            assert isinstance(refusal, CircuitOpenError)
            assert (refusal.opened_by, refusal.calls, refusal.failures, refusal.failure_rate) == (
                "failure_rate",
                10,
                6,
                0.6,
            )
            assert "opened by failure_rate" in str(refusal)
