"""What the aiohttp middleware adds to a request: against a bare ClientSession, in one run.

Run by hand, never in CI:

    uv run python bench/bench_aiohttp.py            # full run
    uv run python bench/bench_aiohttp.py --quick

It starts a minimal uvicorn app in a separate process on a free loopback port, then sends
the same requests through a bare ``aiohttp.ClientSession`` and through one with
``CircuitBreakerMiddleware`` (local backend, healthy upstream), and through one with a
middleware that does nothing (what aiohttp's middleware chain itself costs), alternating in
rounds so that drift hits all alike. It prints the median time per request, the ratio to bare and
the difference, and the load average before and after; then the middleware's own cost
measured without the network (a stub handler returning a ready response), for a healthy request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from functools import partial
from typing import Any

import aiohttp
from _loopback import command_line, idle_breaker, serve_http, upstream
from _rounds import alone_header, alone_row, async_rounds_of, header, load_average, report_with_baseline
from yarl import URL

from tnm.circuit_aiohttp import CircuitBreakerMiddleware


async def noop(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
    """A middleware that does nothing: what aiohttp's middleware chain itself costs."""
    return await handler(request)


def sessions() -> dict[str, aiohttp.ClientSession]:
    return {
        "bare": aiohttp.ClientSession(),
        "tnm": aiohttp.ClientSession(middlewares=[CircuitBreakerMiddleware(idle_breaker())]),
        "noop": aiohttp.ClientSession(middlewares=[noop]),
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
        calls = {name: partial(one_round, session, url, n) for name, session in clients.items()}
        return await async_rounds_of(calls, rounds)
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

    middleware = CircuitBreakerMiddleware(idle_breaker())

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
    alone_header(
        f"The middleware alone (stub handler, best of {repeat} x {n} calls)",
        "stub handler",
        "with the middleware",
    )
    alone_row("healthy 200", base, cost)


def main() -> None:
    args = command_line()
    if args.serve:
        serve_http(args.serve)
        return
    rounds, n = (6, 200) if args.quick else (10, 1000)
    print(f"Python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}")
    load_average("start")
    with upstream(__file__) as port:
        times = asyncio.run(measure(f"http://127.0.0.1:{port}/", rounds, n))
    print(f"\nEnd to end: median over {rounds} alternating rounds of {n} requests (keep-alive, loopback)")
    header("client", "request")
    report_with_baseline("`aiohttp.ClientSession`", "a no-op middleware (aiohttp's own cost)", times)
    load_average("end")
    asyncio.run(middleware_alone(*((20_000, 3) if args.quick else (100_000, 5))))


if __name__ == "__main__":
    main()
