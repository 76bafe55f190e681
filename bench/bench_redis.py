"""Shared-state breakers side by side, on one private redis-server (loopback).

Run by hand, never in CI:

    uv run --group bench python bench/bench_redis.py            # full run
    uv run --group bench python bench/bench_redis.py --quick
    uv run --group bench python bench/bench_redis.py --versus REV   # a failure, against REV's

Compares tnm-circuit's Redis backend (sync and async) with pybreaker's
CircuitRedisStorage, purgatory's Redis unit of work, tnm-circuit-breaker 0.2.2 (run in
its own virtualenv, because it installs the same ``tnm.circuit`` package name), and a
plain redis-py PING. For each path (success, failure, rejection) it prints time per
call, the ratio to pybreaker, and the Redis round trips per call counted with MONITOR
(commands a script runs inside Redis are not round trips and are not counted).

``--versus REV`` times a failure's round trip (sync and async) through this checkout's
tnm-circuit and a git revision's, in interleaved rounds of one process: wall time, and this
process's own CPU time, which the server's share and the loopback's do not blur.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import purgatory
import pybreaker
import redis
import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import NEVER, aboom, aok, boom, load_revision, ok  # the local bench's test functions

from tests.redis_server import RedisServer
from tnm.circuit import CircuitBreaker, ServicePolicy

BREAKERS: list[CircuitBreaker] = []  # closed before the server stops


class RoundTrips:
    """Counts commands sent by clients (not by scripts) while active, via MONITOR."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.count = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.server.port)
        with contextlib.suppress(redis.RedisError), client.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                if command["command"] == "ECHO MARK-END":
                    break
                if command.get("client_type") != "lua":
                    self.count += 1

    @contextlib.contextmanager
    def measure(self) -> Iterator[RoundTrips]:
        self._thread.start()
        self._ready.wait(5)
        marker = redis.Redis(host="127.0.0.1", port=self.server.port)
        marker.ping()
        time.sleep(0.05)
        self.count = 0
        yield self
        marker.echo("MARK-END")
        self._thread.join(timeout=30)


def timed(call: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        try:  # noqa: SIM105 - one check for every implementation's errors, as in bench_local.py
            call()
        except Exception:
            pass
    return (time.perf_counter() - start) / n


async def atimed(call: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        try:  # noqa: SIM105 - (see timed)
            await call()
        except Exception:
            pass
    return (time.perf_counter() - start) / n


# -- implementations: make(func, threshold) -> zero-argument callable -------------------------


def tnm_make(url: str) -> Callable[..., Any]:
    def make(func: Callable[..., Any], threshold: int) -> Callable[..., Any]:
        breaker = CircuitBreaker(
            "redis",
            redis_url=url,
            namespace=f"bench:{time.monotonic_ns()}",
            default_policy=ServicePolicy(window_seconds=3600, max_failures=threshold),
        )
        breaker.initialize()
        BREAKERS.append(breaker)
        return breaker.protect("svc")(func)

    return make


def tnm_amake(url: str) -> Callable[..., Awaitable[Any]]:
    async def make(func: Callable[..., Any], threshold: int) -> Callable[..., Any]:
        breaker = CircuitBreaker(
            "redis",
            redis_url=url,
            namespace=f"bench:{time.monotonic_ns()}",
            default_policy=ServicePolicy(window_seconds=3600, max_failures=threshold),
        )
        await breaker.ainitialize()
        BREAKERS.append(breaker)
        return breaker.protect("svc")(func)

    return make


def pybreaker_make(url: str) -> Callable[..., Any]:
    def make(func: Callable[..., Any], threshold: int) -> Callable[..., Any]:
        client = redis.Redis.from_url(url)
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace=f"bench{time.monotonic_ns()}"
        )
        breaker = pybreaker.CircuitBreaker(fail_max=threshold, reset_timeout=3600, state_storage=storage)
        return breaker(func)  # type: ignore[no-any-return]

    return make


def purgatory_amake(url: str) -> Callable[..., Awaitable[Any]]:
    # purgatory 3.0.1's sync Redis unit of work calls the asyncio client without
    # awaiting it and fails on first use, so only its async flavour is measured.
    async def make(func: Callable[..., Any], threshold: int) -> Callable[..., Any]:
        factory = purgatory.AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=3600, uow=purgatory.AsyncRedisUnitOfWork(url)
        )
        await factory.initialize()
        return factory(f"svc{time.monotonic_ns()}")(func)  # type: ignore[no-any-return]

    return make


OLD_TNM = """
import sys, time
from tnm.circuit import CircuitBreaker
from tnm.circuit.policies import ServicePolicy
url, n, counted = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
class Boom(Exception): pass
def ok(): return 1
def boom(): raise Boom
def loop(f, k):
    start = time.perf_counter()
    for _ in range(k):
        try: f()
        except Exception: pass
    return (time.perf_counter() - start) / k
for path in ("success", "failure", "rejection"):
    threshold = 3 if path == "rejection" else 10**9
    b = CircuitBreaker(backend="redis", redis_url=url, namespace=f"old{time.monotonic_ns()}",
                       default_policy=ServicePolicy(window_seconds=3600, max_failures=threshold))
    b.initialize()
    f = b.protect("svc")(ok if path == "success" else boom)
    if path == "rejection":
        loop(f, 5)
    print("TIMED", path, loop(f, n), flush=True)
    sys.stdin.readline()
    loop(f, counted)
    print("DONE", flush=True)
"""


def old_tnm_python() -> str | None:
    """A virtualenv with tnm-circuit-breaker 0.2.2 (its package name clashes with ours)."""
    venv = Path(tempfile.gettempdir()) / "tnm-circuit-breaker-0.2.2-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run(["uv", "venv", "-q", str(venv)], check=True)
            subprocess.run(
                [
                    "uv",
                    "pip",
                    "install",
                    "-q",
                    "--python",
                    str(python),
                    "tnm-circuit-breaker==0.2.2",
                    "redis",
                ],
                check=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"(tnm-circuit-breaker 0.2.2 unavailable: {exc})")
            return None
    return str(python)


def run_old_tnm(server: RedisServer, n: int) -> dict[str, tuple[float, float]]:
    python = old_tnm_python()
    if python is None:
        return {}
    counted = max(50, n // 10)
    proc = subprocess.Popen(
        [python, "-c", OLD_TNM, server.url, str(n), str(counted)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    results: dict[str, tuple[float, float]] = {}
    for _ in range(3):
        _, path, seconds = proc.stdout.readline().split()
        trips = RoundTrips(server)
        with trips.measure():
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "DONE"
        results[path] = (float(seconds), trips.count / counted)
    proc.wait(timeout=30)
    return results


def measure(server: RedisServer, call: Callable[[], Any], n: int, rejection: bool) -> tuple[float, float]:
    """Time ``n`` calls with nothing else running, then count round trips over a few more.

    MONITOR slows the server down, so it only runs during the counting pass. A few calls
    first (a process's first call of a service reads it), then a pause for the background
    threads' start-up work, which would otherwise land inside a sub-millisecond timing.
    """
    timed(call, 5)
    time.sleep(0.5)
    seconds = timed(call, n)
    counted = max(50, n // 10)
    with RoundTrips(server).measure() as trips:
        timed(call, counted)
    return seconds, trips.count / counted


async def ameasure(
    server: RedisServer, make: Callable[..., Awaitable[Any]], func: Callable[..., Any], threshold: int, n: int
) -> tuple[float, float]:
    """``measure`` for coroutines: the breaker is built and used in one event loop."""
    call = await make(func, threshold)
    await atimed(call, 5)
    await asyncio.sleep(0.5)
    seconds = await atimed(call, n)
    counted = max(50, n // 10)
    with RoundTrips(server).measure() as trips:
        await atimed(call, counted)
    return seconds, trips.count / counted


def paced_commands(server: RedisServer, url: str, rate: int, seconds: float) -> tuple[float, float, int]:
    """Healthy calls under a failure-rate policy at ``rate`` calls/s for ``seconds``.

    Counts every command any client of this process sends meanwhile (the background flushes
    of successes and the refresher's rounds included) and the calls' own time.
    """
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace=f"bench:{time.monotonic_ns()}",
        default_policy=ServicePolicy(window_seconds=60, max_failures=None, failure_rate_threshold=0.5),
    )
    breaker.initialize()
    call = breaker.protect("svc")(ok)
    call()
    batch = rate // 100  # one batch every 10 ms
    calls, busy = 0, 0.0
    with RoundTrips(server).measure() as trips:
        start = time.perf_counter()
        while (now := time.perf_counter()) - start < seconds:
            for _ in range(batch):
                call()
            busy += time.perf_counter() - now
            calls += batch
            time.sleep(max(0.0, start + calls / rate - time.perf_counter()))
        elapsed = time.perf_counter() - start
        breaker.close()  # its last flush is counted too
    return trips.count / calls, busy / calls, int(calls / elapsed)


def failure_versus(url: str, revision: str, rounds: int = 15, n: int = 300) -> None:
    """A failure's round trip through this checkout's tnm-circuit and ``revision``'s, sync and
    async, in ``rounds`` interleaved rounds of ``n`` failures (the order rotated each round):
    the medians of the wall time and of this process's CPU time per failure."""
    import tnm.circuit

    libs = {"this checkout": tnm.circuit, f"@{revision}": load_revision(revision)}

    def breaker_of(lib: Any, kept: list[Any]) -> Any:
        """A breaker of ``lib`` that never opens, added to ``kept`` (closed at the end)."""
        policy = lib.ServicePolicy(window_seconds=3600, max_failures=NEVER)
        breaker = lib.CircuitBreaker(
            "redis", redis_url=url, namespace=f"bench:{time.monotonic_ns()}", default_policy=policy
        )
        kept.append(breaker)
        return breaker

    def per_failure(start: tuple[float, float]) -> tuple[float, float]:
        return (time.perf_counter() - start[0]) / n, (time.process_time() - start[1]) / n

    def rotated(names: list[str], k: int) -> list[str]:
        return names[k % len(names) :] + names[: k % len(names)]

    sync_calls = {}
    for name, lib in libs.items():
        breaker = breaker_of(lib, BREAKERS)
        breaker.initialize()
        sync_calls[name] = breaker.protect("svc")(boom)
        timed(sync_calls[name], 20)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in libs}
    for k in range(rounds):
        for name in rotated(list(libs), k):
            start = (time.perf_counter(), time.process_time())
            timed(sync_calls[name], n)
            samples[name].append(per_failure(start))

    async def async_rounds() -> dict[str, list[tuple[float, float]]]:
        calls, opened = {}, []  # (closed in this loop: their connections belong to it)
        try:
            for name, lib in libs.items():
                breaker = breaker_of(lib, opened)
                await breaker.ainitialize()
                calls[name] = breaker.protect("svc")(aboom)
                await atimed(calls[name], 20)
            found: dict[str, list[tuple[float, float]]] = {name: [] for name in libs}
            for k in range(rounds):
                for name in rotated(list(libs), k):
                    start = (time.perf_counter(), time.process_time())
                    await atimed(calls[name], n)
                    found[name].append(per_failure(start))
            return found
        finally:
            for breaker in opened:
                await breaker.aclose()

    print(f"a failure's round trip against @{revision} (median of {rounds} interleaved rounds of {n})")
    for kind, found in (("sync", samples), ("async", asyncio.run(async_rounds()))):
        line = ", ".join(
            f"{name} {statistics.median(w for w, _ in v) * 1e6:.1f} us"
            f" (this process's CPU {statistics.median(c for _, c in v) * 1e6:.1f} us)"
            for name, v in found.items()
        )
        print(f"  {kind}: {line}")
    print()


def seed_fleet(client: Any, circuits: list[Any], processes: int, sha: str | None = None) -> None:
    """Make each circuit's service called by ``processes`` other processes, a third of them
    failing: the script (``sha``, by default this one) runs their first call and failure as
    theirs, so their marks beside the circuit are the script's own."""
    if not processes:
        return
    from tnm.circuit.backends.redis._script import SHA

    for circuit in circuits:
        for k in range(processes):
            for op in ("acquire", "failure") if k % 3 == 0 else ("acquire",):
                args = circuit.script_args(op, reason="Boom: down")
                args[25] = f"other-{k}"  # ARGV[26], the reporter
                client.evalsha(sha or SHA, len(circuit.keys), *circuit.keys, *args)


def script_cost(url: str, failures: int, services: int = 50, fleet: int = 0) -> None:
    """Redis's own CPU per failure (``INFO commandstats``: the script's microseconds per call)
    and the failure's time against a PING in the same run, under a count and a rate policy
    (``fleet``: as many other processes calling each service)."""
    client = redis.Redis.from_url(url)
    policies = {
        "count": ServicePolicy(window_seconds=3600, max_failures=10**6),
        "rate": ServicePolicy(
            window_seconds=3600, max_failures=None, failure_rate_threshold=1.0, minimum_calls=10**6
        ),
    }
    others = f", {fleet} other processes calling each" if fleet else ""
    print(f"Redis's CPU per failure ({failures} failures over {services} services{others}, commandstats)")
    for name, policy in policies.items():
        breaker = CircuitBreaker(
            "redis", redis_url=url, namespace=f"bench:{time.monotonic_ns()}", default_policy=policy
        )
        breaker.initialize()
        BREAKERS.append(breaker)
        calls = [breaker.protect(f"svc-{i}")(boom) for i in range(services)]
        for call in calls:  # each service read once (a process's first call of it)
            timed(call, 1)
        circuits = breaker.backend.circuits  # type: ignore[attr-defined]
        seed_fleet(client, [circuits[f"svc-{i}"] for i in range(services)], fleet)
        time.sleep(0.3)
        client.config_resetstat()
        start = time.perf_counter()
        for i in range(failures):
            timed(calls[i % services], 1)
        elapsed = (time.perf_counter() - start) / failures
        stats = client.info("commandstats")
        scripts = {k: v for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")}
        count = sum(v["calls"] for v in scripts.values())
        usec = sum(v["usec"] for v in scripts.values())
        ping = timed(client.ping, failures // 4)
        print(
            f"  {name} policy: {usec / max(count, 1):.1f} us inside Redis per script call, {count} calls;"
            f" a failure takes {elapsed * 1e6:.0f} us = {elapsed / ping:.2f} PINGs ({ping * 1e6:.0f} us)"
        )
        breaker.close()
    print()


def script_versus(url: str, other_script: str, rounds: int = 7, per_round: int = 300, fleet: int = 0) -> None:
    """This script against ``other_script`` (another version of circuit.lua), run on the same
    server with the same arguments in interleaved rounds: the median of each one's
    microseconds inside Redis per failure (50 services, count and rate policy)."""
    import statistics

    from tnm.circuit.backends.redis._script import SCRIPT

    client = redis.Redis.from_url(url)
    scripts = {"this script": SCRIPT, "other script": Path(other_script).read_text(encoding="utf-8")}
    shas = {name: client.script_load(text) for name, text in scripts.items()}
    others = f", {fleet} other processes calling each service" if fleet else ""
    print(f"the script per failure, against {other_script} (median of {rounds} interleaved rounds{others})")
    for policy_name, policy in (
        ("count", ServicePolicy(window_seconds=3600, max_failures=10**6)),
        (
            "rate",
            ServicePolicy(
                window_seconds=3600, max_failures=None, failure_rate_threshold=1.0, minimum_calls=10**6
            ),
        ),
    ):
        samples: dict[str, list[float]] = {name: [] for name in scripts}
        calls = {}
        for name in scripts:
            breaker = CircuitBreaker(
                "redis", redis_url=url, namespace=f"bench:{time.monotonic_ns()}", default_policy=policy
            )
            circuits = [
                breaker.backend.circuit(f"svc-{i}", policy, breaker.clock, breaker._listeners)
                for i in range(50)
            ]
            calls[name] = [(c.keys, c.script_args("failure", reason="Boom: down")) for c in circuits]
            seed_fleet(client, circuits, fleet, shas[name])
        for r in range(rounds):
            for name in list(scripts) if r % 2 == 0 else list(reversed(scripts)):
                client.config_resetstat()
                for i in range(per_round):
                    keys, args = calls[name][i % 50]
                    client.evalsha(shas[name], len(keys), *keys, *args)
                stats = client.info("commandstats")["cmdstat_evalsha"]
                samples[name].append(stats["usec"] / stats["calls"])
        line = ", ".join(f"{name} {statistics.median(v):.1f} us" for name, v in samples.items())
        print(f"  {policy_name} policy: {line}")
    print()


Row = tuple[str, float, float]
"""An implementation's name, seconds per call and round trips per call."""


def report(kind: str, path: str, n: int, rows: list[Row], ping: float, own_ping: float | None = None) -> None:
    """One path's table: time per call, as PINGs of the sync client (and, for the asyncio client,
    as PINGs of its own: ``own_ping``), against pybreaker, and round trips per call."""
    reference = {name: seconds for name, seconds, _ in rows}.get("pybreaker redis")
    heads = f"{'implementation':<18}{'us/call':>10}{'vs PING':>10}"
    if own_ping:
        heads += f"{'vs async PING':>15}"
    print(f"{kind} {path} path ({n} calls)")
    print(f"  {heads}{'vs pybreaker':>14}{'round trips':>13}")
    for name, seconds, per_call in rows:
        vs_ref = f"{seconds / reference:.3f}x" if reference else ""
        vs_own = f"{seconds / own_ping:>14.2f}x" if own_ping else ""
        times = f"{seconds * 1e6:>10.2f}{seconds / ping:>9.2f}x{vs_own}"
        print(f"  {name:<18}{times}{vs_ref:>14}{per_call:>13.3f}")
    print()


async def aping_time(url: str, n: int) -> float:
    """Seconds per PING on redis-py's asyncio client (the async paths' own round trip)."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        await atimed(client.ping, 5)
        return await atimed(client.ping, n)
    finally:
        await client.aclose()


def print_setup(url: str) -> None:
    """The versions measured (redis-py's parser: hiredis if installed) and the machine's load."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} not installed"

    server = redis.Redis.from_url(url).info("server")["redis_version"]
    names = ["tnm-circuit-core", "redis", "hiredis", "pybreaker", "purgatory"]
    print(f"redis-server {server}; " + ", ".join(installed(name) for name in names))
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--script-only", action="store_true", help="only the script's cost per failure")
    parser.add_argument("--script-versus", metavar="LUA", help="compare the script with another version")
    parser.add_argument("--versus", metavar="REV", help="time a failure against this git revision's")
    parser.add_argument(
        "--fleet", type=int, default=0, metavar="N", help="the script's cost with N other processes calling"
    )
    args = parser.parse_args()
    n = 300 if args.quick else 2000
    server = RedisServer()
    server.start()
    try:
        url = server.url
        print_setup(url)
        if args.versus:
            failure_versus(url, args.versus)
            return
        if args.script_versus:
            script_versus(url, args.script_versus, fleet=args.fleet)
        script_cost(url, 2000, fleet=args.fleet)
        if args.script_only or args.script_versus:
            return
        ping_client = redis.Redis.from_url(url)
        ping = measure(server, ping_client.ping, n, False)
        print(f"redis-py PING: {ping[0] * 1e6:.1f} us per call, {ping[1]:.2f} round trips per call\n")
        per_call, cost, achieved = paced_commands(server, url, 10_000, 3.0 if args.quick else 10.0)
        print(
            f"failure-rate policy, healthy calls at {achieved} calls/s: {per_call:.4f} Redis commands"
            f" per call (flushes and refreshes included), {cost * 1e6:.2f} us per call\n"
        )
        old = run_old_tnm(server, n)
        for path in ("success", "failure", "rejection"):
            threshold = 3 if path == "rejection" else NEVER
            func = ok if path == "success" else boom
            rows = [
                (name, *measure(server, make(func, threshold), n, path == "rejection"))
                for name, make in (("tnm redis", tnm_make(url)), ("pybreaker redis", pybreaker_make(url)))
            ]
            if path in old:
                rows.append(("tnm 0.2.2 redis", *old[path]))
            report("sync", path, n, rows, ping[0])
        aping = asyncio.run(aping_time(url, n))
        print(f"redis-py asyncio PING: {aping * 1e6:.1f} us per call\n")
        for path in ("success", "failure", "rejection"):
            threshold = 3 if path == "rejection" else NEVER
            afunc = aok if path == "success" else aboom
            rows = [
                (name, *asyncio.run(ameasure(server, amake, afunc, threshold, n)))
                for name, amake in (("tnm redis", tnm_amake(url)), ("purgatory redis", purgatory_amake(url)))
            ]
            report("async", path, n, rows, ping[0], aping)
    finally:
        for breaker in BREAKERS:
            breaker.close()
        server.cleanup()


if __name__ == "__main__":
    main()
