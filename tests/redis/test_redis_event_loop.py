"""Async paths never block the event loop, even while Redis is paused."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from tnm.circuit import CircuitBreaker, ServicePolicy

from ..redis_server import RedisServer

TASKS = 200
PAUSE_MS = 1000
RUN_SECONDS = 1.6


async def run_with_ticker(
    work: Callable[[], Awaitable[None]], during: Callable[[], None] | None = None
) -> tuple[float, float]:
    """Run TASKS copies of ``work`` for RUN_SECONDS.

    Returns the worst lateness of a 5 ms ticker on the same loop, and the longest
    single ``work()`` call (how long a caller waited).
    """
    stop = asyncio.Event()
    worst_lag = 0.0
    longest_call = 0.0

    async def ticker() -> None:
        nonlocal worst_lag
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            worst_lag = max(worst_lag, time.perf_counter() - start - 0.005)

    async def worker() -> None:
        nonlocal longest_call
        while not stop.is_set():
            start = time.perf_counter()
            with contextlib.suppress(Exception):
                await work()
            longest_call = max(longest_call, time.perf_counter() - start)

    tasks = [asyncio.create_task(worker()) for _ in range(TASKS)]
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.1)
    if during is not None:
        threading.Thread(target=during).start()
    await asyncio.sleep(RUN_SECONDS)
    stop.set()
    await asyncio.wait_for(asyncio.gather(tick, *tasks, return_exceptions=True), timeout=10)
    return worst_lag, longest_call


@pytest.mark.slow
@pytest.mark.perf
def test_paused_redis_does_not_lag_the_loop(redis_url: str, redis_server: RedisServer) -> None:
    """200 tasks fail through the breaker while Redis is paused 1 s: the loop is never blocked."""

    async def downstream() -> None:
        await asyncio.sleep(0.001)
        raise ConnectionError("down")

    breaker = CircuitBreaker(
        "redis",
        redis_url=redis_url,
        namespace="lag",
        default_policy=ServicePolicy(window_seconds=3600, max_failures=10**9),
        socket_timeout=3.0,
    )
    pause = PAUSE_MS / 1000

    async def main() -> tuple[float, float, float]:
        await breaker.ainitialize()
        protected = breaker.protect("svc")(downstream)
        bare_lag, _ = await run_with_ticker(downstream)
        paused_lag, longest = await run_with_ticker(
            protected, lambda: redis_server.client().execute_command("CLIENT", "PAUSE", PAUSE_MS)
        )
        await breaker.aclose()
        return bare_lag, paused_lag, longest

    bare_lag, paused_lag, longest = asyncio.run(main())
    print(
        f"max loop lag: bare {bare_lag * 1000:.1f} ms, breaker with Redis paused {paused_lag * 1000:.1f} ms;"
        f" longest call {longest * 1000:.0f} ms"
    )
    # The pause really reached the callers (else this test could not fail)...
    assert longest >= 0.5 * pause, longest
    # ...and the loop kept running meanwhile: a blocking client would show the pause as
    # lag. Bounded by the property (half the pause, over what the bare run saw), not by
    # this machine's speed.
    assert paused_lag < bare_lag + 0.5 * pause, (bare_lag, paused_lag)
