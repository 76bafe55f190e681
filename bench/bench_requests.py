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

import sys
import time
import timeit
from functools import partial
from typing import Any

import requests
from _loopback import command_line, idle_breaker, serve_http, upstream
from _rounds import alone_header, alone_row, header, load_average, report_with_baseline, rounds_of
from requests.adapters import HTTPAdapter

from tnm.circuit_requests import CircuitBreakerAdapter


class NoopAdapter(HTTPAdapter):
    """A transport adapter of its own that only passes on: what mounting one costs."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        return super().send(request, *args, **kwargs)


def sessions() -> dict[str, requests.Session]:
    guarded, passing = requests.Session(), requests.Session()
    guarded.mount("http://", CircuitBreakerAdapter(idle_breaker()))
    passing.mount("http://", NoopAdapter())
    return {"bare": requests.Session(), "tnm": guarded, "noop": passing}


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
    guarded = CircuitBreakerAdapter(idle_breaker())
    original = HTTPAdapter.send
    HTTPAdapter.send = stub  # type: ignore[method-assign]
    try:
        base = min(timeit.repeat(lambda: bare.send(request), number=n, repeat=repeat)) / n
        cost = min(timeit.repeat(lambda: guarded.send(request), number=n, repeat=repeat)) / n
    finally:
        HTTPAdapter.send = original  # type: ignore[method-assign]
    alone_header(
        f"The adapter alone (stub send, best of {repeat} x {n} calls)", "stub send", "with the adapter"
    )
    alone_row("healthy 200", base, cost)


def main() -> None:
    args = command_line()
    if args.serve:
        serve_http(args.serve)
        return
    rounds, n = (6, 200) if args.quick else (10, 1000)
    print(f"Python {sys.version.split()[0]}, requests {requests.__version__}")
    load_average("start")
    with upstream(__file__) as port:
        url = f"http://127.0.0.1:{port}/"
        clients = sessions()
        for session in clients.values():  # warm up: connect, first circuit use
            for _ in range(50):
                session.get(url)
        calls = {name: partial(one_round, session, url, n) for name, session in clients.items()}
        times = rounds_of(calls, rounds)
    print(f"\nEnd to end: median over {rounds} alternating rounds of {n} requests (keep-alive, loopback)")
    header("client", "request")
    report_with_baseline("`requests.Session`", "a pass-through adapter mounted", times)
    load_average("end")
    adapter_alone(*((20_000, 3) if args.quick else (100_000, 5)))


if __name__ == "__main__":
    main()
