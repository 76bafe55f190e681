"""aio_interceptors on a grpc.aio channel against a real grpc.server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
import pytest_asyncio
from grpc import aio

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState
from tnm.circuit.testing import half_open
from tnm.circuit_grpc import CircuitOpenRpcError, aio_interceptors

from .server import EchoServer

MakeBreaker = Callable[..., CircuitBreaker]


def channel_for(breaker: CircuitBreaker, target: str, **options: object) -> aio.Channel:
    return aio.insecure_channel(target, interceptors=aio_interceptors(breaker, target=target, **options))  # type: ignore[arg-type]


@pytest.fixture
def breaker(make_breaker: MakeBreaker) -> CircuitBreaker:
    return make_breaker(max_failures=3, open_seconds=30)


@pytest_asyncio.fixture
async def channel(breaker: CircuitBreaker, echo: EchoServer) -> AsyncIterator[aio.Channel]:
    async with channel_for(breaker, echo.target) as channel:
        yield channel


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return,attr-defined]
    return grpc.StatusCode.OK


async def drain(call: object, into: list[bytes] | None = None) -> None:
    """Read a response stream to its end (or its error)."""
    async for message in call:  # type: ignore[attr-defined]
        if into is not None:
            into.append(message)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait (at most ``timeout``) for a stream's outcome, recorded by a task once the call ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(int(timeout / 0.01)):  # a task on this loop records it: give it turns, bounded
        if predicate() or loop.time() > deadline:
            break
        await asyncio.sleep(0.01)
    return predicate()


class TestUnary:
    @pytest.mark.asyncio
    async def test_failing_target_opens_its_circuit(
        self, channel: aio.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """Three UNAVAILABLE calls open the target's circuit; the next call raises an AioRpcError with
        status UNAVAILABLE at once, and never reaches the server."""
        unary = channel.unary_unary("/echo.Echo/Unary")
        for _ in range(3):
            assert await code_of(unary(b"code:UNAVAILABLE", timeout=10)) is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(CircuitOpenRpcError) as caught:
            await unary(b"ok", timeout=10)
        assert echo.hits() == 3
        assert isinstance(caught.value, aio.AioRpcError)
        assert isinstance(caught.value, CircuitOpenError)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert caught.value.service == echo.target
        assert isinstance(caught.value.__cause__, CircuitOpenError)  # the breaker's own error

    @pytest.mark.asyncio
    async def test_answers_and_deadlines(
        self, channel: aio.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """A reply and NOT_FOUND count nothing; DEADLINE_EXCEEDED counts."""
        unary = channel.unary_unary("/echo.Echo/Unary")
        assert await unary(b"ok", timeout=10) == b"ok"
        assert await code_of(unary(b"code:NOT_FOUND", timeout=10)) is grpc.StatusCode.NOT_FOUND
        assert breaker.state(echo.target).failures == 0
        assert await code_of(unary(b"stall", timeout=0.3)) is grpc.StatusCode.DEADLINE_EXCEEDED
        assert breaker.state(echo.target).failures == 1

    @pytest.mark.asyncio
    async def test_cancelled_trial_gives_its_permit_back(
        self, make_breaker: MakeBreaker, echo: EchoServer
    ) -> None:
        """A half-open trial cancelled in flight returns its permit at once: the next call is the trial."""
        breaker = make_breaker(max_failures=1, half_open_max_calls=1)
        half_open(breaker, echo.target)
        async with channel_for(breaker, echo.target) as channel:
            unary = channel.unary_unary("/echo.Echo/Unary")
            task = asyncio.ensure_future(unary(b"stall", timeout=10))
            assert await until(lambda: echo.hits("Unary") == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert breaker.state(echo.target).state is CircuitState.HALF_OPEN
            assert await unary(b"ok", timeout=10) == b"ok"
        assert breaker.state(echo.target).state is CircuitState.CLOSED


class TestStreams:
    @pytest.mark.asyncio
    async def test_stream_failing_after_messages_delivers_them_and_counts(
        self, channel: aio.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """A unary-stream call that fails after two messages delivers both, then its error, and counts."""
        received: list[bytes] = []
        with pytest.raises(aio.AioRpcError):
            await drain(channel.unary_stream("/echo.Echo/Stream")(b"2,fail", timeout=10), received)
        assert received == [b"0", b"1"]
        assert await until(lambda: breaker.state(echo.target).failures == 1)

    @pytest.mark.asyncio
    async def test_client_streams_count_and_are_refused(
        self, channel: aio.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """Stream-unary and stream-stream calls count, and an open circuit refuses them unsent."""
        collect = channel.stream_unary("/echo.Echo/Collect")
        chat = channel.stream_stream("/echo.Echo/Chat")
        assert await collect(iter([b"a", b"b"]), timeout=10) == b"a,b"
        assert await code_of(collect(iter([b"fail"]), timeout=10)) is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(aio.AioRpcError):
            await drain(chat(iter([b"x", b"fail"]), timeout=10))
        assert await code_of(collect(iter([b"fail"]), timeout=10)) is grpc.StatusCode.UNAVAILABLE
        assert await until(lambda: breaker.state(echo.target).state is CircuitState.OPEN)
        with pytest.raises(CircuitOpenRpcError):
            await collect(iter([b"a"]), timeout=10)
        with pytest.raises(CircuitOpenRpcError):
            await drain(chat(iter([b"a"]), timeout=10))
        assert echo.hits() == 4

    @pytest.mark.asyncio
    async def test_per_method(self, breaker: CircuitBreaker, echo: EchoServer) -> None:
        """per_method=True: a failing method's circuit opens alone, named target and method."""
        async with channel_for(breaker, echo.target, per_method=True) as channel:
            unary = channel.unary_unary("/echo.Echo/Unary")
            for _ in range(3):
                await code_of(unary(b"code:INTERNAL", timeout=10))
            with pytest.raises(CircuitOpenRpcError) as caught:
                await unary(b"ok", timeout=10)
            assert caught.value.service == f"{echo.target}/echo.Echo/Unary"
            messages = [m async for m in channel.unary_stream("/echo.Echo/Stream")(b"1", timeout=10)]
            assert messages == [b"0"]
