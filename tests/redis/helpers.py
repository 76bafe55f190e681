"""Helpers shared by the Redis test files: bounded waits and Redis command counts."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..redis_server import RedisServer


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def script_calls(server: RedisServer) -> int:
    """How many times the circuit script ran on ``server`` (EVALSHA and EVAL)."""
    stats = server.client().info("commandstats")
    return sum(int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_eval"))
