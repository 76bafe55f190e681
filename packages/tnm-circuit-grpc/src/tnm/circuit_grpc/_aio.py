"""``aio_interceptors``: the breaker in front of every call of a ``grpc.aio`` channel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from grpc import aio

from tnm.circuit import Admitted, CircuitBreaker, CircuitOpenError

from ._errors import CircuitOpenRpcError
from ._options import DEFAULT_FAILURE_CODES, Naming, check_breaker, failure_code_set, reason

__all__ = ["aio_interceptors"]


class _Guard:
    """What the four aio interceptors share: admission, and recording a finished call's outcome."""

    def __init__(
        self, breaker: CircuitBreaker, naming: Naming, failure_codes: frozenset[grpc.StatusCode]
    ) -> None:
        self.naming = naming
        self.failure_codes = failure_codes
        self._aadmit = breaker.caller().aadmit
        self._settling: set[asyncio.Task[None]] = set()

    async def admit(self, details: aio.ClientCallDetails) -> Admitted:
        try:
            return await self._aadmit(self.naming.service(details))  # type: ignore[arg-type]
        except CircuitOpenError as error:
            raise CircuitOpenRpcError.from_open_error(error) from error

    async def settle(self, admitted: Admitted, code: grpc.StatusCode | None) -> None:
        if code is None or code is grpc.StatusCode.OK:
            await admitted.asuccess()
        elif code in self.failure_codes:
            await admitted.afailure(reason(code))
        elif code is grpc.StatusCode.CANCELLED:
            admitted.release()
        else:
            await admitted.asuccess()

    async def unary(
        self, continuation: Callable[..., Any], details: aio.ClientCallDetails, request: Any
    ) -> Any:
        """A call with one response: its outcome is recorded before the response is handed over."""
        admitted = await self.admit(details)
        try:
            call = await continuation(details, request)
            code = await call.code()
        except asyncio.CancelledError:
            admitted.release()  # cancelled: no outcome, a trial permit goes back at once
            raise
        except BaseException:
            admitted.release()
            raise
        await self.settle(admitted, code)
        return call

    async def streaming(
        self, continuation: Callable[..., Any], details: aio.ClientCallDetails, request: Any
    ) -> Any:
        """A call with a stream of responses: handed over at once, its outcome recorded when it ends."""
        admitted = await self.admit(details)
        try:
            call = await continuation(details, request)
        except BaseException:
            admitted.release()
            raise
        call.add_done_callback(lambda done: self._settle_later(admitted, done))
        return call

    def _settle_later(self, admitted: Admitted, call: Any) -> None:
        async def run() -> None:
            await self.settle(admitted, await call.code())

        task = asyncio.get_running_loop().create_task(run())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)


class _UnaryUnary(aio.UnaryUnaryClientInterceptor):
    def __init__(self, guard: _Guard) -> None:
        self._guard = guard

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._guard.unary(continuation, client_call_details, request)


class _StreamUnary(aio.StreamUnaryClientInterceptor):
    def __init__(self, guard: _Guard) -> None:
        self._guard = guard

    async def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await self._guard.unary(continuation, client_call_details, request_iterator)


class _UnaryStream(aio.UnaryStreamClientInterceptor):
    def __init__(self, guard: _Guard) -> None:
        self._guard = guard

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._guard.streaming(continuation, client_call_details, request)


class _StreamStream(aio.StreamStreamClientInterceptor):
    def __init__(self, guard: _Guard) -> None:
        self._guard = guard

    async def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await self._guard.streaming(continuation, client_call_details, request_iterator)


def aio_interceptors(
    breaker: CircuitBreaker,
    *,
    target: str,
    per_method: bool = False,
    failure_codes: Iterable[grpc.StatusCode] = DEFAULT_FAILURE_CODES,
) -> list[aio.ClientInterceptor]:
    """The interceptors that send every call of a ``grpc.aio`` channel through its target's circuit.

    ``grpc.aio.insecure_channel(target, interceptors=aio_interceptors(breaker, target=target))``
    (or ``secure_channel``): one interceptor per kind of call (unary-unary, unary-stream,
    stream-unary, stream-stream), since grpc.aio gives each kind its own interface. Options
    and behaviour are those of ``CircuitBreakerInterceptor``; an open circuit makes the call
    raise ``CircuitOpenRpcError`` (an ``AioRpcError`` with status UNAVAILABLE). The
    breaker's async path is used, so a shared (Redis) backend never blocks the event loop,
    and a call cancelled in flight gives its half-open trial permit back.
    """
    guard = _Guard(check_breaker(breaker), Naming(target, per_method), failure_code_set(failure_codes))
    return [_UnaryUnary(guard), _UnaryStream(guard), _StreamUnary(guard), _StreamStream(guard)]
