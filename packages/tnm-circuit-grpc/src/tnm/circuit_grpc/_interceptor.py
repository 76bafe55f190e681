"""``CircuitBreakerInterceptor``: the breaker in front of every call of a sync gRPC channel."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import grpc

from tnm.circuit import Admitted, CircuitBreaker, CircuitOpenError

from ._errors import CircuitOpenRpcError
from ._options import DEFAULT_FAILURE_CODES, Naming, check_breaker, failure_code_set, reason

__all__ = ["CircuitBreakerInterceptor", "settle"]


def settle(
    admitted: Admitted, code: grpc.StatusCode | None, failure_codes: frozenset[grpc.StatusCode]
) -> None:
    """Record a finished call's outcome from its status code."""
    if code is None or code is grpc.StatusCode.OK:
        admitted.success()
    elif code in failure_codes:
        admitted.failure(reason(code))
    elif code is grpc.StatusCode.CANCELLED:
        admitted.release()  # cancelled by the caller: no outcome, a trial permit goes back
    else:
        admitted.success()  # the server answered (NOT_FOUND, INVALID_ARGUMENT...)


class CircuitBreakerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """A client interceptor that sends every call of a sync channel through its target's circuit.

    ``channel = grpc.intercept_channel(grpc.insecure_channel(target),
    CircuitBreakerInterceptor(breaker, target=target))``. Covers unary-unary, unary-stream,
    stream-unary and stream-stream calls, blocking, ``with_call`` and ``future``.

    The circuit is named ``target`` (give the channel's target string); with
    ``per_method=True`` each method has its own circuit, named target and method
    (``"payments:50051/payments.Payments/Charge"``). Its policy is the breaker's. A call
    whose final status is in ``failure_codes`` (default ``DEFAULT_FAILURE_CODES``:
    UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN) is a failure;
    any other status is a success, except CANCELLED (no outcome). The outcome is recorded
    when the call finishes: a stream that fails after some messages has delivered them, and
    counts. While the circuit is open a call fails at once with ``CircuitOpenRpcError``
    (status UNAVAILABLE), and nothing is sent.

    Nothing is kept per method: a circuit no longer used is dropped after the breaker's
    ``meta_ttl_seconds`` like any idle one.
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        target: str,
        per_method: bool = False,
        failure_codes: Iterable[grpc.StatusCode] = DEFAULT_FAILURE_CODES,
    ) -> None:
        self.breaker = check_breaker(breaker)
        self._naming = Naming(target, per_method)
        self.target = target
        self.per_method = per_method
        self.failure_codes = failure_code_set(failure_codes)
        self._admit = breaker.caller().admit

    def __repr__(self) -> str:
        return f"CircuitBreakerInterceptor({self.breaker!r}, target={self.target!r})"

    def _intercept(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        try:
            admitted = self._admit(self._naming.service(details))
        except CircuitOpenError as error:
            return CircuitOpenRpcError.from_open_error(error)
        try:
            call = continuation(details, request)
        except BaseException:  # gRPC returns failed calls; anything raised is not the server's outcome
            admitted.release()
            raise
        codes = self.failure_codes
        call.add_done_callback(lambda done: settle(admitted, done.code(), codes))
        return call

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return self._intercept(continuation, client_call_details, request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return self._intercept(continuation, client_call_details, request)

    def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return self._intercept(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return self._intercept(continuation, client_call_details, request_iterator)
