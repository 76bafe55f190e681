"""Helpers shared by the Redis test files: bounded waits and Redis command counts."""

from __future__ import annotations

import time
from collections.abc import Callable

from tnm.circuit import CircuitBreaker, CircuitState
from tnm.circuit.backends.redis import RedisBackend
from tnm.circuit.testing import mirror_state

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


def redis_backend(breaker: CircuitBreaker) -> RedisBackend:
    """``breaker``'s backend, typed as the Redis backend it is (its keys, channel, threads)."""
    backend = breaker.backend
    assert isinstance(backend, RedisBackend)
    return backend


def mirror_reaches(breaker: CircuitBreaker, service: str, state: CircuitState, timeout: float = 5.0) -> bool:
    """Wait until ``breaker``'s mirror of ``service`` reads ``state``; return whether it did."""
    return wait_for(lambda: mirror_state(breaker, service) is state, timeout)


def subscribers(server: RedisServer, breaker: CircuitBreaker) -> int:
    """How many connections Redis counts as subscribed to ``breaker``'s notice channel."""
    [(_, count)] = server.client().pubsub_numsub(redis_backend(breaker).channel)
    return int(count)


def wait_until_listening(server: RedisServer, breaker: CircuitBreaker, timeout: float = 5.0) -> bool:
    """Wait until Redis has processed ``breaker``'s SUBSCRIBE: with the refresher's next round
    far off, its background threads then send nothing until something changes."""
    return wait_for(lambda: subscribers(server, breaker) == 1, timeout)
