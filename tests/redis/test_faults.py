"""Faults injected into a real redis-server while three application processes run traffic.

Each process calls four services through its breaker: one an operator forced open, one
that is down (its circuit open), one healthy, and one the test trips after the fault.
For every fault we count what reached the callers and the downstream services, and how
soon the fleet sees a new trip once the fault is over.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import pytest

from tnm.circuit import CircuitBreaker, CircuitError, ServicePolicy

from ..redis_server import RedisServer
from .helpers import traffic

PROCESSES = 3
TRAFFIC_SECONDS = 4.0
CONVERGENCE_SECONDS = 2.0
"""Bound on trip -> rejection in every process once the fault is over (10x refresh_interval)."""
NAMESPACE = "faults"


def _sigstop(server: RedisServer) -> None:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    time.sleep(1.0)
    os.kill(server.process.pid, signal.SIGCONT)


def _client_pause(server: RedisServer) -> None:
    server.client().execute_command("CLIENT", "PAUSE", 1000)
    time.sleep(1.1)


def _kill_pubsub(server: RedisServer) -> None:
    server.client().client_kill_filter(_type="pubsub")


def _script_flush(server: RedisServer) -> None:
    server.client().script_flush()


def _flushall(server: RedisServer) -> None:
    server.client().flushall()


def _oom(server: RedisServer) -> None:
    admin = server.client()
    admin.config_set("maxmemory", 1)  # noeviction: every write is refused
    time.sleep(1.0)
    admin.config_set("maxmemory", 0)


def _debug_sleep(server: RedisServer) -> None:
    server.client().execute_command("DEBUG", "SLEEP", "1")


def _restart(server: RedisServer) -> None:
    server.stop()  # SIGKILL: no persistence, the data is gone
    time.sleep(0.5)
    server.start()


def _garbage(server: RedisServer) -> None:
    admin = server.client()
    keys = CircuitBreaker("redis", redis_url=server.url, namespace=NAMESPACE).backend.keys  # type: ignore[attr-defined]
    admin.hset(keys.for_service("forced")[0], "s", "bogus")
    admin.delete(keys.for_service("down")[1])
    admin.set(keys.for_service("down")[1], "not a sorted set")
    for message in [b"\xff", "{", json.dumps(["down", "closed", 0, 0, 10**15, 0, "", 1])] * 30:
        admin.publish(keys.channel, message)


FAULTS: dict[str, Callable[[RedisServer], None]] = {
    "SIGSTOP/SIGCONT": _sigstop,
    "CLIENT PAUSE": _client_pause,
    "CLIENT KILL TYPE pubsub": _kill_pubsub,
    "SCRIPT FLUSH": _script_flush,
    "FLUSHALL": _flushall,
    "maxmemory OOM": _oom,
    "DEBUG SLEEP": _debug_sleep,
    "SIGKILL + restart": _restart,
    "garbage keys and notices": _garbage,
}
DATA_LOST = {"FLUSHALL", "SIGKILL + restart"}


def _breaker(url: str) -> CircuitBreaker:
    return CircuitBreaker(
        "redis",
        redis_url=url,
        namespace=NAMESPACE,
        default_policy=ServicePolicy(max_failures=3, window_seconds=60, open_seconds=60),
        socket_timeout=0.5,
    )


def _initialized(url: str, timeout: float = 10.0) -> CircuitBreaker:
    deadline = time.monotonic() + timeout
    while True:
        breaker = _breaker(url)
        try:
            breaker.initialize()
            return breaker
        except CircuitError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_mid_traffic(fault: str) -> None:
    """No caller sees a foreign error, the forced-open service never runs, the down one is not
    hit again (bar its threshold after a data loss), and a trip after the fault reaches every
    process within CONVERGENCE_SECONDS."""
    server = RedisServer()
    server.start()
    try:
        ops = _initialized(server.url)
        ops.force_open("forced", "maintenance")
        for _ in range(3):
            ops.record_failure("down", "down")
        ops.close()
        with traffic(server.url, NAMESPACE, TRAFFIC_SECONDS, PROCESSES) as running:
            time.sleep(0.5)  # traffic flows before the fault
            FAULTS[fault](server)
            tripper = _initialized(server.url)
            for _ in range(3):
                tripper.record_failure("tripped", "down")
            tripped_at = time.time()
            assert tripper.state("tripped").state.value == "open"
            tripper.close()
            results = running.results()
    finally:
        server.cleanup()
    print(fault, results)
    down_allowance = 3 + PROCESSES if fault in DATA_LOST else 0
    for result in results:
        assert result["foreign"] == [], result
        assert result["forced_runs"] == 0, result
        assert result["healthy_rejected"] == 0, result
        assert result["healthy_ok"] > 100, result
        assert result["tripped_seen_at"] is not None, result
        assert result["tripped_seen_at"] - tripped_at < CONVERGENCE_SECONDS, result
    assert sum(r["down_runs"] for r in results) <= down_allowance, results
