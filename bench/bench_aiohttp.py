"""What the aiohttp middleware adds to a request: against a bare ClientSession, in one run.

Run by hand, never in CI:

    uv run python bench/bench_aiohttp.py            # full run
    uv run python bench/bench_aiohttp.py --quick

It starts a minimal uvicorn app in a separate process on a free loopback port, then sends
the same requests through a bare ``aiohttp.ClientSession`` and through one with
``CircuitBreakerMiddleware`` (local backend, healthy upstream), alternating in rounds so
that drift hits both alike. It prints the median time per request, the ratio to bare and
the difference, and the load average before and after; then the middleware's own cost
measured without the network (a stub handler returning a ready response), for a healthy request.
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
from typing import Any

import aiohttp
from yarl import URL

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_aiohttp import CircuitBreakerMiddleware

NEVER = 10**9  # a threshold no run reaches


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The upstream: answers every request with a small 200."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the upstream did not start")


def sessions() -> dict[str, aiohttp.ClientSession]:
    breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=NEVER, window_seconds=3600))
    return {
        "bare": aiohttp.ClientSession(),
        "tnm": aiohttp.ClientSession(middlewares=[CircuitBreakerMiddleware(breaker)]),
    }


async def one_round(session: aiohttp.ClientSession, url: str, n: int) -> float:
    get = session.get
    start = time.perf_counter()
    for _ in range(n):
        async with get(url) as response:
            await response.read()
    return (time.perf_counter() - start) / n


async def measure(url: str, rounds: int, n: int) -> dict[str, list[float]]:
    clients = sessions()
    try:
        for session in clients.values():  # warm up: connect, first circuit use
            for _ in range(50):
                async with session.get(url) as response:
                    await response.read()
        times: dict[str, list[float]] = {"bare": [], "tnm": []}
        for i in range(rounds):
            for name in ("bare", "tnm") if i % 2 == 0 else ("tnm", "bare"):
                times[name].append(await one_round(clients[name], url, n))
        return times
    finally:
        for session in clients.values():
            await session.close()


async def middleware_alone(n: int, repeat: int) -> None:
    """The middleware's own cost per request, around a handler that returns at once."""

    class Ready:
        status = 200

    class Request:
        url = URL("http://upstream.test/")

    ready, request = Ready(), Request()

    async def handler(_: Any) -> Any:
        return ready

    middleware = CircuitBreakerMiddleware(
        CircuitBreaker(default_policy=ServicePolicy(max_failures=NEVER, window_seconds=3600))
    )

    async def best(call: Any) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(n):
                await call()
            times.append((time.perf_counter() - start) / n)
        return min(times)

    base = await best(lambda: handler(request))
    cost = await best(lambda: middleware(request, handler))  # type: ignore[arg-type]
    print(f"\nThe middleware alone (stub handler, best of {repeat} x {n} calls)")
    print("| path | stub handler ns | with the middleware ns | added ns |")
    print("| --- | --- | --- | --- |")
    print(f"| healthy 200 | {base * 1e9:.0f} | {cost * 1e9:.0f} | {(cost - base) * 1e9:+.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rounds, n = (6, 200) if args.quick else (10, 1000)
    print(f"Python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    process, url = start_server()
    try:
        times = asyncio.run(measure(url, rounds, n))
    finally:
        process.terminate()
        process.wait(timeout=20)
    bare, tnm = (statistics.median(times[name]) for name in ("bare", "tnm"))
    spread = max(abs(a / b - 1) for a, b in zip(times["tnm"], times["bare"], strict=True))
    print(f"\nEnd to end: median over {rounds} alternating rounds of {n} requests (keep-alive, loopback)")
    print("| client | bare µs/request | tnm µs/request | tnm / bare | added µs | widest gap in one round |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| `aiohttp.ClientSession` | {bare * 1e6:.1f} | {tnm * 1e6:.1f} | {tnm / bare:.3f}x "
        f"| {(tnm - bare) * 1e6:+.1f} | {spread * 100:.1f}% |"
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    asyncio.run(middleware_alone(*((20_000, 3) if args.quick else (100_000, 5))))


if __name__ == "__main__":
    main()
