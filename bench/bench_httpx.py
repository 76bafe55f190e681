"""What the httpx transports add to a request: against a bare client, in one run.

Run by hand, never in CI:

    uv run python bench/bench_httpx.py            # full run
    uv run python bench/bench_httpx.py --quick

It starts a minimal uvicorn app in a separate process on a free loopback port, then
sends the same requests through a bare ``httpx.Client`` / ``httpx.AsyncClient`` and
through one with ``CircuitBreakerTransport`` / ``AsyncCircuitBreakerTransport`` (local
backend, healthy upstream), alternating in rounds so that drift hits both alike. It
prints time per request, the ratio to bare and the difference; then the transport's own
cost measured without the network (a stub inner transport), for a healthy request, a
counted 503 and a refused request.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx
from _loopback import command_line, idle_breaker, serve_http, upstream
from _rounds import alone_header, alone_row, async_rounds_of, header, report, rounds_of

from tnm.circuit import CircuitOpenError
from tnm.circuit_httpx import AsyncCircuitBreakerTransport, CircuitBreakerTransport

# -- end to end: a real request, bare against wrapped -------------------------------------


def sync_round(client: httpx.Client, url: str, n: int) -> float:
    get = client.get
    start = time.perf_counter()
    for _ in range(n):
        get(url)
    return (time.perf_counter() - start) / n


async def async_round(client: httpx.AsyncClient, url: str, n: int) -> float:
    get = client.get
    start = time.perf_counter()
    for _ in range(n):
        await get(url)
    return (time.perf_counter() - start) / n


def end_to_end(url: str, rounds: int, n: int) -> None:
    print(
        f"\nEnd to end: median over {rounds} alternating rounds of {n} requests "
        "(keep-alive, one loopback upstream)"
    )
    header("client", "request")
    clients = {
        "bare": httpx.Client(),
        "tnm": httpx.Client(transport=CircuitBreakerTransport(idle_breaker())),
    }
    for client in clients.values():  # warm up: connect, first circuit use
        for _ in range(200):
            client.get(url)
    times = rounds_of({name: partial(sync_round, c, url, n) for name, c in clients.items()}, rounds)
    report("sync `httpx.Client`", times)
    for client in clients.values():
        client.close()

    async def run_async() -> None:
        aclients = {
            "bare": httpx.AsyncClient(),
            "tnm": httpx.AsyncClient(transport=AsyncCircuitBreakerTransport(idle_breaker())),
        }
        for client in aclients.values():
            for _ in range(200):
                await client.get(url)
        calls = {name: partial(async_round, c, url, n) for name, c in aclients.items()}
        report("async `httpx.AsyncClient`", await async_rounds_of(calls, rounds))
        for client in aclients.values():
            await client.aclose()

    asyncio.run(run_async())


# -- the transport alone: a stub inner transport, no network --------------------------------


class Stub(httpx.BaseTransport, httpx.AsyncBaseTransport):
    def __init__(self, status: int) -> None:
        self.response = httpx.Response(status)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.response


def per_call(func: Callable[[], Any], n: int, repeat: int) -> float:
    return min(timeit.repeat(func, number=n, repeat=repeat)) / n


def async_per_call(make: Callable[[], Awaitable[Any]], n: int, repeat: int) -> float:
    async def loop() -> float:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(n):
                await make()
            best = min(best, time.perf_counter() - start)
        return best / n

    return asyncio.run(loop())


def refused(call: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> None:
        with contextlib.suppress(CircuitOpenError):
            call()

    return run


def stub_pair(label: str, status: int, request: httpx.Request, n: int, repeat: int) -> None:
    """One path of the transport alone: the stub inner transport bare, then wrapped (sync, async)."""
    stub = Stub(status)
    wrapped = CircuitBreakerTransport(idle_breaker(), transport=stub)
    base = per_call(lambda: stub.handle_request(request), n, repeat)
    cost = per_call(lambda: wrapped.handle_request(request), n, repeat)
    alone_row(f"sync {label}", base, cost)
    awrapped = AsyncCircuitBreakerTransport(idle_breaker(), transport=stub)
    base = async_per_call(lambda: stub.handle_async_request(request), n, repeat)
    cost = async_per_call(lambda: awrapped.handle_async_request(request), n, repeat)
    alone_row(f"async {label}", base, cost)


def transport_alone(n: int, repeat: int) -> None:
    request = httpx.Request("GET", "http://upstream.test/")
    alone_header(
        f"The transport alone (stub inner transport, best of {repeat} x {n} calls)",
        "inner transport",
        "wrapped",
    )
    stub_pair("healthy 200", 200, request, n, repeat)
    stub_pair("counted 503", 503, request, n, repeat)
    open_breaker = idle_breaker()
    open_breaker.force_open("upstream.test:80")
    wrapped = CircuitBreakerTransport(open_breaker, transport=Stub(200))
    cost = per_call(refused(lambda: wrapped.handle_request(request)), n, repeat)
    print(f"| sync refused (circuit open) | | {cost * 1e9:.0f} | |")


def main() -> None:
    args = command_line()
    if args.serve:
        serve_http(args.serve)
        return
    rounds, n = (4, 500) if args.quick else (10, 2000)
    print(f"Python {sys.version.split()[0]}, httpx {httpx.__version__}")
    with upstream(__file__) as port:
        end_to_end(f"http://127.0.0.1:{port}/", rounds, n)
    transport_alone(*((20_000, 3) if args.quick else (100_000, 5)))


if __name__ == "__main__":
    main()
