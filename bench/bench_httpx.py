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

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy
from tnm.circuit_httpx import AsyncCircuitBreakerTransport, CircuitBreakerTransport

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


def breaker() -> CircuitBreaker:
    return CircuitBreaker(default_policy=ServicePolicy(max_failures=NEVER, window_seconds=3600))


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


def compare(label: str, rounds: int, run: Callable[[str, int], float], n: int) -> None:
    times: dict[str, list[float]] = {"bare": [], "tnm": []}
    for i in range(rounds):
        order = ("bare", "tnm") if i % 2 == 0 else ("tnm", "bare")
        for name in order:
            times[name].append(run(name, n))
    report(label, times)


def report(label: str, times: dict[str, list[float]]) -> None:
    """One table row: medians of the rounds, their ratio and difference, and the widest gap
    between the two within one round (how much a single round can mislead)."""
    bare, tnm = (statistics.median(times[name]) for name in ("bare", "tnm"))
    spread = max(abs(a / b - 1) for a, b in zip(times["tnm"], times["bare"], strict=True))
    print(
        f"| {label} | {bare * 1e6:.1f} | {tnm * 1e6:.1f} | {tnm / bare:.3f}x | {(tnm - bare) * 1e6:+.1f} "
        f"| {spread * 100:.1f}% |"
    )


def end_to_end(url: str, rounds: int, n: int) -> None:
    print(
        f"\nEnd to end: median over {rounds} alternating rounds of {n} requests "
        "(keep-alive, one loopback upstream)"
    )
    print("| client | bare µs/request | tnm µs/request | tnm / bare | added µs | widest gap in one round |")
    print("| --- | --- | --- | --- | --- | --- |")
    clients = {
        "bare": httpx.Client(),
        "tnm": httpx.Client(transport=CircuitBreakerTransport(breaker())),
    }
    for client in clients.values():  # warm up: connect, first circuit use
        for _ in range(200):
            client.get(url)
    compare("sync `httpx.Client`", rounds, lambda name, k: sync_round(clients[name], url, k), n)
    for client in clients.values():
        client.close()

    async def run_async() -> None:
        aclients = {
            "bare": httpx.AsyncClient(),
            "tnm": httpx.AsyncClient(transport=AsyncCircuitBreakerTransport(breaker())),
        }
        for client in aclients.values():
            for _ in range(200):
                await client.get(url)
        times: dict[str, list[float]] = {"bare": [], "tnm": []}
        for i in range(rounds):
            for name in ("bare", "tnm") if i % 2 == 0 else ("tnm", "bare"):
                times[name].append(await async_round(aclients[name], url, n))
        report("async `httpx.AsyncClient`", times)
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
    wrapped = CircuitBreakerTransport(breaker(), transport=stub)
    base = per_call(lambda: stub.handle_request(request), n, repeat)
    cost = per_call(lambda: wrapped.handle_request(request), n, repeat)
    print(f"| sync {label} | {base * 1e9:.0f} | {cost * 1e9:.0f} | {(cost - base) * 1e9:+.0f} |")
    awrapped = AsyncCircuitBreakerTransport(breaker(), transport=stub)
    base = async_per_call(lambda: stub.handle_async_request(request), n, repeat)
    cost = async_per_call(lambda: awrapped.handle_async_request(request), n, repeat)
    print(f"| async {label} | {base * 1e9:.0f} | {cost * 1e9:.0f} | {(cost - base) * 1e9:+.0f} |")


def transport_alone(n: int, repeat: int) -> None:
    request = httpx.Request("GET", "http://upstream.test/")
    print(f"\nThe transport alone (stub inner transport, best of {repeat} x {n} calls)")
    print("| path | inner transport ns | wrapped ns | added ns |")
    print("| --- | --- | --- | --- |")
    stub_pair("healthy 200", 200, request, n, repeat)
    stub_pair("counted 503", 503, request, n, repeat)
    open_breaker = breaker()
    open_breaker.force_open("upstream.test:80")
    wrapped = CircuitBreakerTransport(open_breaker, transport=Stub(200))
    cost = per_call(refused(lambda: wrapped.handle_request(request)), n, repeat)
    print(f"| sync refused (circuit open) | | {cost * 1e9:.0f} | |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rounds, n = (4, 500) if args.quick else (10, 2000)
    print(f"Python {sys.version.split()[0]}, httpx {httpx.__version__}")
    process, url = start_server()
    try:
        end_to_end(url, rounds, n)
    finally:
        process.terminate()
        process.wait(timeout=20)
    transport_alone(*((20_000, 3) if args.quick else (100_000, 5)))


if __name__ == "__main__":
    main()
