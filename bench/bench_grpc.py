"""What the gRPC interceptors add to a call: against a bare channel, in one run.

Run by hand, never in CI:

    uv run python bench/bench_grpc.py            # full run
    uv run python bench/bench_grpc.py --quick

It starts a minimal gRPC server (one unary method, bytes in and out) in a separate process on a
free loopback port, then makes the same unary calls through a bare channel and through one with
the breaker (``CircuitBreakerInterceptor`` on a sync channel, ``aio_interceptors`` on a
``grpc.aio`` channel; local backend, healthy server), alternating in rounds so that drift hits
both alike, beside a channel with an interceptor that does nothing (what gRPC's own
interception costs, paid by any interceptor). It prints the median time per call, the ratio
to bare and the difference, and the load average before and after; then the sync
interceptor's own cost measured without the network (a stub continuation returning a finished
call), for a healthy call.
"""

from __future__ import annotations

import asyncio
import sys
import time
import timeit
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import grpc
from _loopback import command_line, idle_breaker, upstream
from _rounds import (
    alone_header,
    alone_row,
    async_rounds_of,
    header,
    load_average,
    report_with_baseline,
    rounds_of,
)
from grpc import aio

from tnm.circuit_grpc import CircuitBreakerInterceptor, aio_interceptors

METHOD = "/bench.Bench/Echo"


def serve(port: int) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    handlers = {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Bench", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


class Noop(grpc.UnaryUnaryClientInterceptor):
    """An interceptor that does nothing: what gRPC's interception itself costs."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


class AioNoop(aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


def sync_calls(target: str, rounds: int, n: int) -> None:
    interceptor = CircuitBreakerInterceptor(idle_breaker(), target=target)
    channels = {
        "bare": grpc.insecure_channel(target),
        "noop": grpc.intercept_channel(grpc.insecure_channel(target), Noop()),
        "tnm": grpc.intercept_channel(grpc.insecure_channel(target), interceptor),
    }
    calls: dict[str, Callable[..., bytes]] = {name: ch.unary_unary(METHOD) for name, ch in channels.items()}
    for call in calls.values():  # warm up: connect, first circuit use
        for _ in range(100):
            call(b"x", timeout=10)

    def one_round(call: Callable[..., bytes]) -> float:
        start = time.perf_counter()
        for _ in range(n):
            call(b"x", timeout=10)
        return (time.perf_counter() - start) / n

    times = rounds_of({name: partial(one_round, call) for name, call in calls.items()}, rounds)
    report_with_baseline("sync channel, unary", "a no-op interceptor (gRPC's own cost)", times)
    for channel in channels.values():
        channel.close()


async def aio_calls(target: str, rounds: int, n: int) -> None:
    channels = {
        "bare": aio.insecure_channel(target),
        "noop": aio.insecure_channel(target, interceptors=[AioNoop()]),
        "tnm": aio.insecure_channel(target, interceptors=aio_interceptors(idle_breaker(), target=target)),
    }
    calls = {name: ch.unary_unary(METHOD) for name, ch in channels.items()}
    for call in calls.values():
        for _ in range(100):
            await call(b"x", timeout=10)

    async def one_round(call: aio.UnaryUnaryMultiCallable) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await call(b"x", timeout=10)
        return (time.perf_counter() - start) / n

    times = await async_rounds_of({name: partial(one_round, call) for name, call in calls.items()}, rounds)
    report_with_baseline("`grpc.aio` channel, unary", "a no-op interceptor (gRPC's own cost)", times)
    for channel in channels.values():
        await channel.close()


class Finished:
    """What a continuation returns for a finished unary call (as gRPC's own outcome objects)."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)


def interceptor_alone(n: int, repeat: int) -> None:
    finished = Finished()

    def continuation(details: Any, request: Any) -> Finished:
        return finished

    interceptor = CircuitBreakerInterceptor(idle_breaker(), target="upstream.test:50051")
    base = min(timeit.repeat(lambda: continuation(None, b"x"), number=n, repeat=repeat)) / n
    run = interceptor.intercept_unary_unary
    cost = min(timeit.repeat(lambda: run(continuation, None, b"x"), number=n, repeat=repeat)) / n  # type: ignore[arg-type]
    alone_header(
        f"The sync interceptor alone (stub continuation, best of {repeat} x {n} calls)",
        "stub",
        "with the interceptor",
    )
    alone_row("healthy unary", base, cost)


def main() -> None:
    args = command_line()
    if args.serve:
        serve(args.serve)
        return
    rounds, n = (6, 300) if args.quick else (10, 2000)
    print(f"Python {sys.version.split()[0]}, grpcio {grpc.__version__}")
    load_average("start")
    with upstream(__file__, "server") as port:
        target = f"127.0.0.1:{port}"
        print(f"\nEnd to end: median over {rounds} alternating rounds of {n} calls (one loopback server)")
        header("channel", "call")
        sync_calls(target, rounds, n)
        asyncio.run(aio_calls(target, rounds, n))
    load_average("end")
    interceptor_alone(*((20_000, 3) if args.quick else (100_000, 5)))


if __name__ == "__main__":
    main()
