"""Helpers shared by the Redis test files: bounded waits and Redis command counts."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.connection

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


@contextmanager
def commands_sent_here(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """What this thread sends to Redis inside the block, one entry per write to a connection
    (a command, a pipeline, a packed script run: one round trip each): a call path's round
    trips, without what the background threads send meanwhile (their reads are theirs)."""
    caller = threading.current_thread()
    sent: list[bytes] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, *args: Any, **options: Any) -> Any:
        if threading.current_thread() is caller:
            parts = [command] if isinstance(command, (bytes, str)) else list(command)
            sent.append(b"".join(p.encode() if isinstance(p, str) else bytes(p) for p in parts)[:60])
        return send(self, command, *args, **options)

    with monkeypatch.context() as patch:
        patch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
        yield sent


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
    """Wait until Redis has processed ``breaker``'s SUBSCRIBE and the read that follows it is
    done: with the refresher's next round far off, its background threads then send nothing
    until something changes."""
    backend = redis_backend(breaker)
    listener, refresher = backend.listener, backend.refresher

    # (Redis may count the subscriber before the listener thread asked for the read that
    # follows; once ``subscribed`` is set, ``read_done`` stands for that read.)
    def listening() -> bool:
        return (
            subscribers(server, breaker) == 1
            and listener.subscribed.is_set()
            and refresher.read_done.is_set()
        )

    return wait_for(listening, timeout)


def read_line(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """The next line ``process`` prints on its stdout pipe, waiting at most ``timeout`` seconds.

    It reads the pipe a byte at a time: a buffered ``readline`` may take two lines at once, and
    ``select`` cannot see the second one waiting in Python's buffer.
    """
    assert process.stdout is not None
    pipe = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = bytearray()
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"the process said nothing in time (so far: {bytes(line)!r})"
        byte = os.read(pipe, 1)
        assert byte, f"the process closed its output (so far: {bytes(line)!r})"
        line += byte
    return line.decode().strip()


ROOT = Path(__file__).resolve().parents[2]


class Traffic:
    """Application processes running ``tests/redis/fault_worker.py`` (or ``worker``, with
    ``extra`` arguments) against one store."""

    def __init__(
        self,
        url: str,
        namespace: str,
        seconds: float,
        processes: int,
        worker: str = "fault_worker",
        extra: tuple[str, ...] = (),
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", f"tests.redis.{worker}", url, namespace, str(seconds), *extra]
        self.workers = [
            subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(processes)
        ]

    def wait_ready(self, timeout: float = 30) -> None:
        for worker in self.workers:
            assert read_line(worker, timeout) == "ready"

    def results(self, timeout: float = 30) -> list[dict[str, Any]]:
        return [json.loads(read_line(worker, timeout)) for worker in self.workers]

    def stop(self) -> None:
        for worker in self.workers:
            worker.kill()
            worker.wait(10)
            if worker.stdout is not None:
                worker.stdout.close()


@contextmanager
def traffic(
    url: str,
    namespace: str,
    seconds: float,
    processes: int,
    worker: str = "fault_worker",
    extra: tuple[str, ...] = (),
) -> Iterator[Traffic]:
    """Start the processes, wait until each is ready; kill them on the way out."""
    running = Traffic(url, namespace, seconds, processes, worker, extra)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()
