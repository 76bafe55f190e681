"""What one idle process costs Redis, and how fast a trip reaches it, against the number of services.

Run by hand, never in CI:

    uv run python bench/bench_redis_scale.py             # 100, 10,000 and 100,000 services
    uv run python bench/bench_redis_scale.py --quick     # 100 and 10,000

For each size it starts a private redis-server on a free loopback port, makes one process's
breaker mirror that many services, and reports the time to make the circuits (made),
``initialize()``'s read of them all, and the time from ``initialize()`` until the listener's read
after subscribing is done (subscribed; on one server it reads nothing new unless something was
published meanwhile).
Then it measures over 5 s of idleness
the Redis commands per second that process sends, and, with a second breaker tripping
services one by one, the time until the idle process's mirror shows each trip (p50, p99).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_server import RedisServer
from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy

POLICY = ServicePolicy(max_failures=1, window_seconds=60, open_seconds=600)
TRIPS = 50


def measure(count: int) -> tuple[float, float, float, float, float, float]:
    server = RedisServer()
    server.start()
    try:
        idle = CircuitBreaker("redis", redis_url=server.url, namespace="scale", default_policy=POLICY)
        tripper = CircuitBreaker("redis", redis_url=server.url, namespace="scale", default_policy=POLICY)
        names = [f"svc-{n}" for n in range(count)]
        started = time.perf_counter()
        backend = idle.backend
        for name in names:  # the circuits a process has used, made without a round trip each
            backend.circuit(name, POLICY, idle.clock, idle._listeners)  # type: ignore[attr-defined]
        made = time.perf_counter() - started
        started = time.perf_counter()
        idle.initialize()  # one pipelined read of every circuit
        warm = time.perf_counter() - started
        tripper.initialize()
        admin = server.client()
        backend.refresher.read_done.wait(120)  # type: ignore[attr-defined]  # the read after subscribing
        ready = time.perf_counter() - started
        time.sleep(0.5)
        before = int(admin.info("stats")["total_commands_processed"])
        time.sleep(5.0)
        per_second = (int(admin.info("stats")["total_commands_processed"]) - before - 1) / 5.0
        delays = []
        for n in range(TRIPS):
            name = names[(n * 7919) % count]
            started = time.perf_counter()
            tripper.record_failure(name, "down")
            mirror = backend.circuits[name]  # type: ignore[attr-defined]
            while mirror.state is not CircuitState.OPEN:
                if time.perf_counter() - started > 5:
                    break
            delays.append(time.perf_counter() - started)
        idle.close()
        tripper.close()
        delays.sort()
        return made, warm, ready, per_second, statistics.median(delays), delays[int(len(delays) * 0.99) - 1]
    finally:
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    sizes = (100, 10_000) if parser.parse_args().quick else (100, 10_000, 100_000)
    print(
        f"{'services':>9} {'made s':>7} {'initialize() s':>15} {'subscribed s':>13} {'idle cmds/s':>12}"
        f" {'trip p50 ms':>12} {'trip p99 ms':>12}"
    )
    for count in sizes:
        made, warm, ready, per_second, p50, p99 = measure(count)
        print(
            f"{count:>9,} {made:>7.2f} {warm:>15.2f} {ready:>13.2f} {per_second:>12.1f} {p50 * 1000:>12.2f}"
            f" {p99 * 1000:>12.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
