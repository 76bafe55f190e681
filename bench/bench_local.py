"""In-process breakers side by side: tnm-circuit (local backend) against its peers.

Run by hand, never in CI:

    uv run --group bench python bench/bench_local.py            # full run
    uv run --group bench python bench/bench_local.py --quick    # fewer iterations
    uv run --group bench python bench/bench_local.py --quick --versus REV   # and REV's, beside

``--versus REV`` also times the tnm-circuit of a git revision (say ``HEAD~1``, or a commit
before a change), imported beside this checkout's, in the same rounds: a change's before
and after measured in one process, on the same moments of the machine.

Prints the versions measured and the load average, then, for the success, failure and
rejection paths (sync and async), each implementation's time per call (the median of
interleaved rounds: each round times every implementation once, so a noisy moment hits
them alike), its overhead over a bare call measured in the same rounds, and that
overhead as a ratio of circuitbreaker's; then 8-thread throughput of a
protected 1 ms function relative to bare, and memory over a million rejected calls.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import functools
import gc
import importlib.util
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import timeit
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import aiobreaker
import circuitbreaker
import purgatory
import pybreaker

import tnm.circuit
import tnm.circuit.metrics  # (read as ``lib.metrics``)
from tnm.circuit import CircuitOpenError

NEVER = 10**9  # a threshold no run reaches, so the failure path never opens


class Boom(Exception):
    pass


def ok() -> int:
    return 1


def boom() -> None:
    raise Boom


async def aok() -> int:
    return 1


async def aboom() -> None:
    raise Boom


# -- each implementation: (name, make(func, threshold)), listed in SYNC_IMPLS and ASYNC_IMPLS


# (``lib``: the tnm.circuit package measured, this checkout's unless ``--versus`` gave another)


def tnm_breaker(threshold: int, lib: ModuleType = tnm.circuit) -> Any:
    return lib.CircuitBreaker(default_policy=lib.ServicePolicy(window_seconds=3600, max_failures=threshold))


def tnm_sync(func: Callable[..., Any], threshold: int, lib: ModuleType = tnm.circuit) -> Callable[..., Any]:
    return tnm_breaker(threshold, lib).protect("svc")(func)  # type: ignore[no-any-return]


def tnm_rate(func: Callable[..., Any], threshold: int, lib: ModuleType = tnm.circuit) -> Callable[..., Any]:
    """tnm protect with a failure-rate policy (every call counted in the rate window)."""
    if threshold == NEVER:  # counts every call, never trips
        policy = lib.ServicePolicy(
            window_seconds=3600, max_failures=None, failure_rate_threshold=1.0, minimum_calls=NEVER
        )
    else:
        policy = lib.ServicePolicy(
            window_seconds=3600, max_failures=None, failure_rate_threshold=0.5, minimum_calls=threshold
        )
    return lib.CircuitBreaker(default_policy=policy).protect("svc")(func)  # type: ignore[no-any-return]


def tnm_metrics(
    func: Callable[..., Any], threshold: int, lib: ModuleType = tnm.circuit
) -> Callable[..., Any]:
    """tnm protect with Prometheus metrics attached (on a private registry)."""
    from prometheus_client import CollectorRegistry

    breaker = tnm_breaker(threshold, lib)
    lib.metrics.PrometheusMetrics(breaker, registry=CollectorRegistry())
    return breaker.protect("svc")(func)  # type: ignore[no-any-return]


def tnm_execute(
    func: Callable[..., Any], threshold: int, lib: ModuleType = tnm.circuit
) -> Callable[..., Any]:
    execute = tnm_breaker(threshold, lib).execute
    return lambda: execute("svc", func)


def load_revision(revision: str) -> ModuleType:
    """tnm.circuit as it stands at git ``revision``, imported as ``tnm_versus`` beside this
    checkout's (its modules import one another relatively, so the two never mix)."""
    package = "packages/tnm-circuit-core/src/tnm/circuit"
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, package], capture_output=True, check=True
    ).stdout
    target = Path(tempfile.mkdtemp(prefix="tnm-versus-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # (CPython 3.10.12 and 3.11.4 on)
            tar.extractall(target, filter="data")
        else:  # (an archive of this repository)
            tar.extractall(target)
    spec = importlib.util.spec_from_file_location(
        "tnm_versus", target / package / "__init__.py", submodule_search_locations=[str(target / package)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tnm_versus"] = module
    spec.loader.exec_module(module)
    import tnm_versus.metrics  # type: ignore[import-not-found]  # noqa: F401 - (lib.metrics)

    return module


def add_versus(revision: str) -> None:
    """Time ``revision``'s tnm-circuit too: a row beside each of this checkout's."""
    lib = load_revision(revision)
    for impls in (SYNC_IMPLS, ASYNC_IMPLS):
        paired: list[tuple[str, Callable[..., Any] | None]] = []
        for name, make in impls:
            paired.append((name, make))
            if name.startswith("tnm") and make is not None:
                paired.append((f"{name} @{revision}", functools.partial(make, lib=lib)))
        impls[:] = paired


def cb_make(func: Callable[..., Any], threshold: int) -> Callable[..., Any]:
    return circuitbreaker.circuit(failure_threshold=threshold, recovery_timeout=3600)(func)  # type: ignore[no-any-return]


def pyb_make(func: Callable[..., Any], threshold: int) -> Callable[..., Any]:
    return pybreaker.CircuitBreaker(fail_max=threshold, reset_timeout=3600)(func)  # type: ignore[no-any-return]


def aiob_make(func: Callable[..., Any], threshold: int) -> Callable[..., Any]:
    breaker = aiobreaker.CircuitBreaker(fail_max=threshold, timeout_duration=timedelta(seconds=3600))
    return breaker(func)  # type: ignore[no-any-return]


def purg_sync(func: Callable[..., Any], threshold: int) -> Callable[..., Any]:
    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=3600)
    return factory("svc")(func)  # type: ignore[no-any-return]


def purg_async(func: Callable[..., Any], threshold: int) -> Callable[..., Any]:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=3600)
    return factory("svc")(func)  # type: ignore[no-any-return]


SYNC_IMPLS: list[tuple[str, Callable[..., Any] | None]] = [
    ("bare", None),
    ("tnm protect", tnm_sync),
    ("tnm rate policy", tnm_rate),
    ("tnm + metrics", tnm_metrics),
    ("tnm execute", tnm_execute),
    ("circuitbreaker", cb_make),
    ("pybreaker", pyb_make),
    ("purgatory", purg_sync),
]
ASYNC_IMPLS: list[tuple[str, Callable[..., Any] | None]] = [
    ("bare", None),
    ("tnm protect", tnm_sync),
    ("tnm rate policy", tnm_rate),
    ("tnm + metrics", tnm_metrics),
    ("circuitbreaker", cb_make),
    ("aiobreaker", aiob_make),
    ("purgatory", purg_async),
]


# Each timed loop catches what a call raises with ``except Exception``: one check, the same for
# every implementation (a tuple of their errors would make the ones listed last pay more).


def sync_loop(call: Callable[[], Any], raises: bool) -> Callable[[int], float]:
    """Time ``n`` calls of ``call`` (an exception it raises is caught, as a caller would)."""
    if raises:

        def step() -> None:
            try:  # noqa: SIM105 - contextlib.suppress would add its own cost to every timed call
                call()
            except Exception:
                pass

        target = step
    else:
        target = call  # type: ignore[assignment]
    return lambda n: timeit.timeit(target, number=n)


def async_loop(call: Callable[[], Any], raises: bool) -> Callable[[int], Any]:
    """A coroutine function timing ``n`` awaited calls of ``call``."""

    async def loop(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            try:
                await call()
            except Exception:
                if not raises:
                    raise
        return time.perf_counter() - start

    return loop


def interleaved(timers: list[Callable[[int], Any]], n: int, rounds: int, is_async: bool) -> list[float]:
    """Each timer's median time per call over ``rounds`` rounds; each round runs every timer
    once (in an order rotated per round), so that a noisy moment hits all of them alike."""
    samples: list[list[float]] = [[] for _ in timers]

    async def arounds() -> None:
        for r in range(rounds):
            for i in [(r + k) % len(timers) for k in range(len(timers))]:
                samples[i].append(await timers[i](n) / n)

    if is_async:
        asyncio.run(arounds())
    else:
        for r in range(rounds):
            for i in [(r + k) % len(timers) for k in range(len(timers))]:
                samples[i].append(timers[i](n) / n)
    return [statistics.median(s) for s in samples]


def trip(call: Callable[[], Any], is_async: bool) -> None:
    for _ in range(5):
        try:
            if is_async:
                asyncio.run(call())
            else:
                call()
        except Exception:
            pass


def run_paths(
    impls: list[tuple[str, Callable[..., Any] | None]], is_async: bool, n: int, rounds: int
) -> None:
    good, bad = (aok, aboom) if is_async else (ok, boom)
    loop = async_loop if is_async else sync_loop
    kind = "async" if is_async else "sync"
    for path in ("success", "failure", "rejection"):
        names: list[str] = []
        timers: list[Callable[[int], Any]] = []
        for name, make in impls:
            if make is None:
                call: Callable[[], Any] = bad if path != "success" else good
            elif path == "success":
                call = make(good, NEVER)
            elif path == "failure":
                call = make(bad, NEVER)
            else:
                call = make(bad, 3)
                trip(call, is_async)
            names.append(name)
            timers.append(loop(call, path != "success"))
        rows = list(zip(names, interleaved(timers, n, rounds, is_async), strict=True))
        bare = rows[0][1]
        reference = dict(rows).get("circuitbreaker", bare) - bare
        print(f"\n{kind} {path} path ({n} calls per round, median of {rounds} interleaved rounds)")
        width = max(18, *(len(name) + 2 for name in names))
        print(f"  {'implementation':<{width}}{'ns/call':>10}{'overhead ns':>13}{'vs circuitbreaker':>20}")
        for name, seconds in rows:
            overhead = seconds - bare
            ratio = f"{overhead / reference:.2f}x" if name != "bare" and reference > 0 else ""
            print(f"  {name:<{width}}{seconds * 1e9:>10.0f}{overhead * 1e9:>13.0f}{ratio:>20}")


def threaded_throughput(calls_per_thread: int) -> None:
    def work() -> None:
        time.sleep(0.001)

    print(f"\n8 threads x {calls_per_thread} calls of a protected 1 ms function (throughput vs bare)")
    results: dict[str, float] = {}
    for name, make in [
        ("bare", None),
        ("tnm protect", tnm_sync),
        ("circuitbreaker", cb_make),
        ("pybreaker", pyb_make),
    ]:
        func = work if make is None else make(work, NEVER)

        def worker(f: Callable[[], Any] = func) -> None:
            for _ in range(calls_per_thread):
                f()

        threads = [threading.Thread(target=worker) for _ in range(8)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results[name] = 8 * calls_per_thread / (time.perf_counter() - start)
    for name, rate in results.items():
        print(f"  {name:<16}{rate:>10.0f} calls/s {rate / results['bare']:>8.2f}x")


def rejected_memory(calls: int) -> None:
    print(f"\nmemory over {calls} rejected calls (tracemalloc, after gc)")
    call = tnm_sync(boom, 3)
    trip(call, False)

    def reject_many(count: int) -> None:
        for _ in range(count):
            try:  # noqa: SIM105 - see per_call_sync
                call()
            except CircuitOpenError:
                pass

    reject_many(10_000)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    reject_many(calls)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"  tnm protect: {before} B before, {after} B after ({after - before:+d} B)")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # not available on this platform
        return "unknown"


def print_setup() -> None:
    """What the figures depend on: the interpreter, the peers' versions and the machine's load."""
    from importlib.metadata import version

    peers = ["tnm-circuit-core", "circuitbreaker", "pybreaker", "aiobreaker", "purgatory"]
    print(f"CPython {platform.python_version()} on {os.cpu_count()} CPU(s)")
    print("versions: " + ", ".join(f"{name} {version(name)}" for name in peers))
    print(f"load average at the start: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--versus", metavar="REV", help="also time the tnm-circuit of this git revision")
    args = parser.parse_args()
    n, rounds = (20_000, 5) if args.quick else (100_000, 9)
    print_setup()
    if args.versus:
        add_versus(args.versus)
        print(f"versus: tnm-circuit at {args.versus} (rows marked @{args.versus})")
    run_paths(SYNC_IMPLS, False, n, rounds)
    run_paths(ASYNC_IMPLS, True, n // 2, rounds)
    threaded_throughput(50 if args.quick else 200)
    rejected_memory(100_000 if args.quick else 1_000_000)
    print(f"\nload average at the end: {load_average()}")


if __name__ == "__main__":
    main()
