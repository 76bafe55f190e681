"""One asyncio application process failing one service through a Redis-backed breaker.

Run as ``python -m tests.redis.async_failure_worker URL NAMESPACE SECONDS``. It prints ``ready``
once its circuit is warm, then four tasks call the service (which always fails) for SECONDS.
Each failure's exception carries a token of its own, ``u<pid>x<n>``, that the breaker sends as
the failure's reason. It prints one JSON line: how many calls got their own exception back
(``own``), how often the store went degraded (a reply lost: the process decided alone until
Redis answered again), and any other exception a caller got (``foreign``, must be empty).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time

from tnm.circuit import CircuitBreaker, EventKind, ServicePolicy

TASKS = 4


class DownError(Exception):
    """The service's own failure."""


async def main() -> None:
    url, namespace, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace=namespace,
        default_policy=ServicePolicy(max_failures=10**6, window_seconds=3600),  # never opens
        refresh_interval=0.2,
        socket_timeout=0.2,
    )
    await breaker.ainitialize()
    await breaker.astate("svc")
    degraded = 0

    def on_event(event: object) -> None:
        nonlocal degraded
        degraded += getattr(event, "kind", None) is EventKind.STORAGE_DEGRADED

    breaker.add_listener(on_event)
    numbers = itertools.count()
    pid = os.getpid()

    @breaker.protect("svc")
    async def service() -> None:
        raise DownError(f"u{pid}x{next(numbers)}")

    own = 0
    foreign: list[str] = []

    async def calls(deadline: float) -> None:
        nonlocal own
        while time.monotonic() < deadline:
            try:
                await service()
            except DownError:
                own += 1
            except Exception as exc:
                foreign.append(repr(exc))

    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(calls(deadline) for _ in range(TASKS)))
    await breaker.aclose()
    print(json.dumps({"own": own, "degraded": degraded, "foreign": foreign[:5]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
