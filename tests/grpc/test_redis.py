"""The interceptors on the Redis backend: one circuit per target shared by processes, circuits no
longer used dropped, and a grpc.aio channel that never makes the breaker do blocking I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc import aio

from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock
from tnm.circuit_grpc import CircuitBreakerInterceptor, CircuitOpenRpcError, aio_interceptors

from ..blocking_spy import spy_on_blocking
from ..other_process import POLICY, run_script, until_open
from .server import EchoServer

# Another process: a sync channel sends the given unary requests through its own Redis-backed
# breaker and prints each outcome (a status code name, or "refused").
OTHER_PROCESS = """
import json, os, sys
import grpc
from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_grpc import CircuitBreakerInterceptor, CircuitOpenRpcError

breaker = CircuitBreaker(
    "redis", redis_url=os.environ["REDIS_URL"], namespace=os.environ["NAMESPACE"],
    default_policy=ServicePolicy(**json.loads(os.environ["POLICY"])),
)
breaker.initialize()
target = os.environ["TARGET"]
outcomes = []
try:
    interceptor = CircuitBreakerInterceptor(breaker, target=target)
    with grpc.intercept_channel(grpc.insecure_channel(target), interceptor) as channel:
        unary = channel.unary_unary("/echo.Echo/Unary")
        for request in sys.argv[1:]:
            try:
                unary(request.encode(), timeout=10)
                outcomes.append("OK")
            except CircuitOpenRpcError:
                outcomes.append("refused")
            except grpc.RpcError as error:
                outcomes.append(error.code().name)
finally:
    breaker.close()
print(json.dumps(outcomes))
"""


def in_other_process(redis_url: str, target: str, *requests: str) -> list[Any]:
    return run_script(OTHER_PROCESS, redis_url, *requests, TARGET=target)


def sync_channel(breaker: CircuitBreaker, target: str, **options: Any) -> grpc.Channel:
    interceptor = CircuitBreakerInterceptor(breaker, target=target, **options)
    return grpc.intercept_channel(grpc.insecure_channel(target), interceptor)


class TestSharedAcrossProcesses:
    @pytest.mark.slow
    def test_opened_elsewhere_refused_here(
        self, make_redis_breaker: Callable[..., CircuitBreaker], redis_url: str, echo: EchoServer
    ) -> None:
        """Another process's failures open the target's circuit for this process too: its next call
        fails with UNAVAILABLE at once and never reaches the server."""
        breaker = make_redis_breaker(use_clock=False, **POLICY)
        with sync_channel(breaker, echo.target) as channel:
            unary = channel.unary_unary("/echo.Echo/Unary")
            assert unary(b"ok", timeout=10) == b"ok"
            failing = "code:UNAVAILABLE"
            assert in_other_process(redis_url, echo.target, failing, failing, "ok") == [
                "UNAVAILABLE",
                "UNAVAILABLE",
                "refused",
            ]
            handle = breaker.circuits()[echo.target]
            until_open(handle)  # this process learns of it in the background: bounded
            with pytest.raises(CircuitOpenRpcError):
                unary(b"ok", timeout=10)
        assert echo.hits() == 3

    @pytest.mark.slow
    def test_opened_here_refused_in_a_new_process(
        self, make_redis_breaker: Callable[..., CircuitBreaker], redis_url: str, echo: EchoServer
    ) -> None:
        """A process that starts while the target's circuit is open refuses its very first call."""
        breaker = make_redis_breaker(use_clock=False, **POLICY)
        with sync_channel(breaker, echo.target) as channel:
            for _ in range(2):
                with pytest.raises(grpc.RpcError):
                    channel.unary_unary("/echo.Echo/Unary")(b"code:UNAVAILABLE", timeout=10)
        assert in_other_process(redis_url, echo.target, "ok") == ["refused"]
        assert echo.hits() == 2


class TestAsyncStaysAsync:
    @pytest.mark.asyncio
    async def test_no_sync_breaker_io_on_the_event_loop(
        self,
        make_redis_breaker: Callable[..., CircuitBreaker],
        clock: ManualClock,
        echo: EchoServer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Failures, the opening, the refusal, a stream and a half-open trial through a grpc.aio
        channel use only the circuit's async methods: Redis round trips never block the loop."""
        breaker = make_redis_breaker(max_failures=2, open_seconds=60)
        breaker.state(echo.target)  # the handle exists: spy on its blocking methods
        handle = breaker.circuits()[echo.target]
        blocking_calls = spy_on_blocking(handle, monkeypatch)
        try:
            async with aio.insecure_channel(
                echo.target, interceptors=aio_interceptors(breaker, target=echo.target)
            ) as channel:
                unary = channel.unary_unary("/echo.Echo/Unary")
                assert [m async for m in channel.unary_stream("/echo.Echo/Stream")(b"2", timeout=10)] == [
                    b"0",
                    b"1",
                ]
                for _ in range(2):
                    with pytest.raises(aio.AioRpcError):
                        await unary(b"code:UNAVAILABLE", timeout=10)
                with pytest.raises(CircuitOpenRpcError):
                    await unary(b"ok", timeout=10)
                clock.advance(61)
                assert await unary(b"ok", timeout=10) == b"ok"
            assert blocking_calls == []
            assert (await breaker.astate(echo.target)).state is CircuitState.CLOSED
        finally:
            await breaker.aclose()


class TestCircuitsNoLongerUsed:
    @pytest.mark.slow
    def test_dropped_on_both_backends(
        self, make_redis_breaker: Callable[..., CircuitBreaker], clock: ManualClock, echo: EchoServer
    ) -> None:
        """With per_method=True, 100 methods called once leave their circuits after meta_ttl_seconds,
        locally and on Redis; an open one stays (an unknown method is UNIMPLEMENTED: a success)."""
        policy = {"max_failures": 1, "open_seconds": 3600, "window_seconds": 3600}
        local = CircuitBreaker(clock=clock, meta_ttl_seconds=60, default_policy=ServicePolicy(**policy))
        shared = make_redis_breaker(backend_options={"meta_ttl_seconds": 60}, **policy)
        for breaker in (local, shared):
            with sync_channel(breaker, echo.target, per_method=True) as channel:
                with pytest.raises(grpc.RpcError):
                    channel.unary_unary("/echo.Echo/Unary")(b"code:UNAVAILABLE", timeout=10)
                for n in range(100):
                    with pytest.raises(grpc.RpcError):
                        channel.unary_unary(f"/echo.Echo/M{n}")(b"ok", timeout=10)
                for step in range(2):
                    clock.advance(61)
                    with pytest.raises(grpc.RpcError):
                        channel.unary_unary(f"/echo.Echo/New{step}")(b"ok", timeout=10)
            expected = {f"{echo.target}/echo.Echo/{name}" for name in ("Unary", "New0", "New1")}
            assert set(breaker.circuits()) == expected
