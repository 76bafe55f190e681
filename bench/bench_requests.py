"""What the requests adapter adds to a request: against a bare Session, in one run.

Run by hand, never in CI:

    uv run python bench/bench_requests.py            # full run
    uv run python bench/bench_requests.py --quick

It starts a minimal uvicorn app in a separate process on a free loopback port, then sends
the same requests through a bare ``requests.Session`` and through one with
``CircuitBreakerAdapter`` mounted (local backend, healthy upstream), alternating in rounds
so that drift hits both alike. It prints the median time per request, the ratio to bare and
the difference, and the load average before and after; then the adapter's own cost measured
without the network (requests' ``HTTPAdapter.send`` replaced by a stub returning a ready
response), for a healthy request.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import timeit
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_requests import CircuitBreakerAdapter

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


def sessions() -> dict[str, requests.Session]:
    breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=NEVER, window_seconds=3600))
    guarded = requests.Session()
    guarded.mount("http://", CircuitBreakerAdapter(breaker))
    return {"bare": requests.Session(), "tnm": guarded}


def one_round(session: requests.Session, url: str, n: int) -> float:
    get = session.get
    start = time.perf_counter()
    for _ in range(n):
        get(url)
    return (time.perf_counter() - start) / n


def adapter_alone(n: int, repeat: int) -> None:
    """The adapter's own cost per request: ``send`` with requests' own replaced by a stub."""
    ready = requests.Response()
    ready.status_code = 200
    request = requests.Request("GET", "http://upstream.test/").prepare()
    stub = lambda *args, **kwargs: ready  # noqa: E731
    bare = HTTPAdapter()
    guarded = CircuitBreakerAdapter(sessions_breaker())
    original = HTTPAdapter.send
    HTTPAdapter.send = stub  # type: ignore[method-assign]
    try:
        base = min(timeit.repeat(lambda: bare.send(request), number=n, repeat=repeat)) / n
        cost = min(timeit.repeat(lambda: guarded.send(request), number=n, repeat=repeat)) / n
    finally:
        HTTPAdapter.send = original  # type: ignore[method-assign]
    print(f"\nThe adapter alone (stub send, best of {repeat} x {n} calls)")
    print("| path | stub send ns | with the adapter ns | added ns |")
    print("| --- | --- | --- | --- |")
    print(f"| healthy 200 | {base * 1e9:.0f} | {cost * 1e9:.0f} | {(cost - base) * 1e9:+.0f} |")


def sessions_breaker() -> CircuitBreaker:
    return CircuitBreaker(default_policy=ServicePolicy(max_failures=NEVER, window_seconds=3600))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rounds, n = (6, 200) if args.quick else (10, 1000)
    print(f"Python {sys.version.split()[0]}, requests {requests.__version__}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    process, url = start_server()
    try:
        clients = sessions()
        for session in clients.values():  # warm up: connect, first circuit use
            for _ in range(50):
                session.get(url)
        times: dict[str, list[float]] = {"bare": [], "tnm": []}
        for i in range(rounds):
            for name in ("bare", "tnm") if i % 2 == 0 else ("tnm", "bare"):
                times[name].append(one_round(clients[name], url, n))
    finally:
        process.terminate()
        process.wait(timeout=20)
    bare, tnm = (statistics.median(times[name]) for name in ("bare", "tnm"))
    spread = max(abs(a / b - 1) for a, b in zip(times["tnm"], times["bare"], strict=True))
    print(f"\nEnd to end: median over {rounds} alternating rounds of {n} requests (keep-alive, loopback)")
    print("| client | bare µs/request | tnm µs/request | tnm / bare | added µs | widest gap in one round |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| `requests.Session` | {bare * 1e6:.1f} | {tnm * 1e6:.1f} | {tnm / bare:.3f}x "
        f"| {(tnm - bare) * 1e6:+.1f} | {spread * 100:.1f}% |"
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    adapter_alone(*((20_000, 3) if args.quick else (100_000, 5)))


if __name__ == "__main__":
    main()
