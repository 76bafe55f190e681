"""The public surface of tnm.circuit_httpx is exactly what we mean to export."""

from __future__ import annotations

import tnm.circuit_httpx

EXPECTED = {
    "DEFAULT_FAILURE_STATUSES",
    "AsyncCircuitBreakerTransport",
    "CircuitBreakerTransport",
    "CircuitOpenRequestError",
    "ServiceName",
    "authority",
}


def test_exported_members_are_exact() -> None:
    """__all__ names exactly the public members, and no other public name leaks into the module."""
    public = {name for name in vars(tnm.circuit_httpx) if not name.startswith("_")}
    assert set(tnm.circuit_httpx.__all__) == EXPECTED
    assert public == EXPECTED


def test_public_members_say_where_they_live() -> None:
    """Every exported class and function reports the public package, not a private module."""
    for name in EXPECTED - {"DEFAULT_FAILURE_STATUSES", "ServiceName"}:
        assert getattr(tnm.circuit_httpx, name).__module__ == "tnm.circuit_httpx", name
