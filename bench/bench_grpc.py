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

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc import aio

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_grpc import CircuitBreakerInterceptor, aio_interceptors

NEVER = 10**9  # a threshold no run reaches
METHOD = "/bench.Bench/Echo"


def serve(port: int) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    handlers = {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Bench", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start")


def breaker() -> CircuitBreaker:
    return CircuitBreaker(default_policy=ServicePolicy(max_failures=NEVER, window_seconds=3600))


def report(label: str, times: dict[str, list[float]]) -> None:
    bare, tnm = (statistics.median(times[name]) for name in ("bare", "tnm"))
    spread = max(abs(a / b - 1) for a, b in zip(times["tnm"], times["bare"], strict=True))
    print(
        f"| {label} | {bare * 1e6:.1f} | {tnm * 1e6:.1f} | {tnm / bare:.3f}x | {(tnm - bare) * 1e6:+.1f} "
        f"| {spread * 100:.1f}% |"
    )


class Noop(grpc.UnaryUnaryClientInterceptor):
    """An interceptor that does nothing: what gRPC's interception itself costs."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


class AioNoop(aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


def rounds_of(calls: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each round runs every variant once, in an order that rotates between rounds."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(calls[name]())
    return times


def sync_calls(target: str, rounds: int, n: int) -> None:
    interceptor = CircuitBreakerInterceptor(breaker(), target=target)
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

    times = rounds_of({name: (lambda call=call: one_round(call)) for name, call in calls.items()}, rounds)
    report("sync channel, unary", times)
    report(
        "sync channel, a no-op interceptor (gRPC's own cost)", {"bare": times["bare"], "tnm": times["noop"]}
    )
    for channel in channels.values():
        channel.close()


async def aio_calls(target: str, rounds: int, n: int) -> None:
    channels = {
        "bare": aio.insecure_channel(target),
        "noop": aio.insecure_channel(target, interceptors=[AioNoop()]),
        "tnm": aio.insecure_channel(target, interceptors=aio_interceptors(breaker(), target=target)),
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

    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(await one_round(calls[name]))
    report("`grpc.aio` channel, unary", times)
    report(
        "`grpc.aio` channel, a no-op interceptor (gRPC's own cost)",
        {"bare": times["bare"], "tnm": times["noop"]},
    )
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

    interceptor = CircuitBreakerInterceptor(breaker(), target="upstream.test:50051")
    base = min(timeit.repeat(lambda: continuation(None, b"x"), number=n, repeat=repeat)) / n
    run = interceptor.intercept_unary_unary
    cost = min(timeit.repeat(lambda: run(continuation, None, b"x"), number=n, repeat=repeat)) / n  # type: ignore[arg-type]
    print(f"\nThe sync interceptor alone (stub continuation, best of {repeat} x {n} calls)")
    print("| path | stub ns | with the interceptor ns | added ns |")
    print("| --- | --- | --- | --- |")
    print(f"| healthy unary | {base * 1e9:.0f} | {cost * 1e9:.0f} | {(cost - base) * 1e9:+.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rounds, n = (6, 300) if args.quick else (10, 2000)
    print(f"Python {sys.version.split()[0]}, grpcio {grpc.__version__}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    process, target = start_server()
    try:
        print(f"\nEnd to end: median over {rounds} alternating rounds of {n} calls (one loopback server)")
        print("| channel | bare µs/call | tnm µs/call | tnm / bare | added µs | widest gap in one round |")
        print("| --- | --- | --- | --- | --- | --- |")
        sync_calls(target, rounds, n)
        asyncio.run(aio_calls(target, rounds, n))
    finally:
        process.terminate()
        process.wait(timeout=20)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    interceptor_alone(*((20_000, 3) if args.quick else (100_000, 5)))


if __name__ == "__main__":
    main()
