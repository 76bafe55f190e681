"""Checking the interceptors' options and naming a call's circuit."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from tnm.circuit import CircuitBreaker, InvalidConfigError, InvalidConfigTypeError

__all__ = ["DEFAULT_FAILURE_CODES", "Naming", "check_breaker", "failure_code_set"]

DEFAULT_FAILURE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
"""Status codes that say the server is down, overloaded, too slow or broken."""


def check_breaker(breaker: object) -> CircuitBreaker:
    if not isinstance(breaker, CircuitBreaker):
        raise InvalidConfigTypeError("breaker", f"must be a tnm.circuit.CircuitBreaker, got {breaker!r}")
    return breaker


def failure_code_set(failure_codes: Iterable[grpc.StatusCode]) -> frozenset[grpc.StatusCode]:
    if isinstance(failure_codes, (str, bytes)) or not isinstance(failure_codes, Iterable):
        raise InvalidConfigTypeError(
            "failure_codes", f"must be a collection of grpc.StatusCode, got {failure_codes!r}"
        )
    codes = frozenset(failure_codes)
    for code in codes:
        if not isinstance(code, grpc.StatusCode):
            raise InvalidConfigTypeError("failure_codes", f"must hold grpc.StatusCode members, got {code!r}")
    if grpc.StatusCode.OK in codes:
        raise InvalidConfigError("failure_codes", "OK is a success, never a failure")
    return codes


class Naming:
    """The circuit of a call: the target, or the target and the method with ``per_method``."""

    __slots__ = ("per_method", "target")

    def __init__(self, target: object, per_method: object) -> None:
        if not isinstance(target, str):
            raise InvalidConfigTypeError("target", f"must be the channel's target string, got {target!r}")
        if not target:
            raise InvalidConfigError("target", "must not be empty")
        if not isinstance(per_method, bool):
            raise InvalidConfigTypeError("per_method", f"must be a bool, got {per_method!r}")
        self.target = target
        self.per_method = per_method

    def service(self, details: grpc.ClientCallDetails) -> str:
        if not self.per_method:
            return self.target
        method: str | bytes = details.method
        if isinstance(method, bytes):
            method = method.decode()
        return f"{self.target}{method}"  # "payments:50051/payments.Payments/Charge"


def reason(code: grpc.StatusCode) -> str:
    """The failure's reason as the breaker records it: ``"gRPC UNAVAILABLE"``."""
    return f"gRPC {code.name}"
