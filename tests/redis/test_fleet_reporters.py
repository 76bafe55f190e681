"""The fleet's reporters beside each circuit (who calls, who failed, who is isolated): counted
inside their window whatever the fleet's size, at a cost that does not grow with it, and never
holding a member per process that ever called."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit.backends.redis import _buckets
from tnm.circuit.backends.redis._script import Reply, eval_script
from tnm.circuit.testing import ManualClock

from ..redis_server import RedisServer
from .helpers import redis_backend, wait_for

MakeRedisBreaker = Callable[..., CircuitBreaker]

REPORTER_ARG = 25
"""The reporter's index in the script's arguments (ARGV[26])."""


def _run_as(app: CircuitBreaker, service: str, op: str, reporter: str, **options: Any) -> list[Any]:
    """The script's ``op`` on ``service``, run as the process ``reporter`` would run it."""
    backend = redis_backend(app)
    circuit = backend.store.circuits[service]
    args = circuit.script_args(op, **options)
    args[REPORTER_ARG] = reporter
    reply: list[Any] = eval_script(backend.store.client(), circuit.keys, args)
    return reply


def _members(server: RedisServer, app: CircuitBreaker, service: str) -> int:
    return int(server.client().zcard(redis_backend(app).store.circuits[service].keys[4]))


@pytest.fixture
def script_times(redis_server: RedisServer) -> Iterator[Callable[[bytes], list[int]]]:
    """Every command's time inside Redis (``SLOWLOG`` at 0 µs): ``times(word)`` gives the µs of
    each script run whose arguments hold ``word`` (a key), oldest first."""
    admin = redis_server.client()
    admin.config_set("slowlog-max-len", 10_000)
    admin.config_set("slowlog-log-slower-than", 0)
    admin.slowlog_reset()

    def times(word: bytes) -> list[int]:
        entries = admin.slowlog_get(10_000)
        runs = [e for e in entries if e["command"].startswith(b"EVALSHA") and word in e["command"]]
        return [int(e["duration"]) for e in reversed(runs) if b" failure " in e["command"]]

    yield times
    admin.config_set("slowlog-log-slower-than", 10_000)
    admin.slowlog_reset()


class TestFleetSize:
    def test_a_failures_cost_inside_redis_does_not_grow_with_the_fleet(
        self,
        make_redis_breaker: MakeRedisBreaker,
        script_times: Callable[[bytes], list[int]],
    ) -> None:
        """A failure of a service 90 other processes call (30 of them failing) runs about as long
        inside Redis as one of a service only this process calls (medians of interleaved runs):
        each count is one ``ZCOUNT`` of its band, never a read of the whole set."""
        app = make_redis_breaker(max_failures=10**6, min_failing_processes=2)
        redis_backend(app).refresher.stop(5)  # (its reads are not failures anyway)
        for service in ("alone", "crowded"):
            app.record_failure(service, "timeout")
        for k in range(90):
            _run_as(app, "crowded", "acquire", f"other-{k}")
            if k % 3 == 0:
                _run_as(app, "crowded", "failure", f"other-{k}")
        assert app.state("crowded").failing_processes == 31
        for _ in range(150):
            app.record_failure("alone", "timeout")
            app.record_failure("crowded", "timeout")
        alone, crowded = script_times(b"{alone}"), script_times(b"{crowded}")
        assert len(alone) >= 150
        assert len(crowded) >= 150
        # (reading the whole set took 2.3 times as long; a band's count costs a few µs)
        assert statistics.median(crowded) <= 1.4 * statistics.median(alone) + 3

    def test_only_a_failure_that_may_isolate_its_process_looks_for_other_callers(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """Whether another process calls decides only whether this one may isolate itself: the
        failures before its own trigger is met do not ask Redis (one command less each)."""
        app = make_redis_breaker(max_failures=5, min_failing_processes=2)
        redis_backend(app).refresher.stop(5)
        app.record_failure("svc", "timeout")
        _run_as(app, "svc", "acquire", "other")  # another process calls the service
        admin = redis_server.client()
        admin.config_resetstat()
        for _ in range(3):
            app.record_failure("svc", "timeout")
        assert "cmdstat_zrange" not in admin.info("commandstats")
        app.record_failure("svc", "timeout")  # its fifth in a row: this process isolates itself
        assert admin.info("commandstats")["cmdstat_zrange"]["calls"] == 1
        assert redis_backend(app).store.circuits["svc"].others_seen

    def test_a_crowd_of_one_kind_never_pushes_out_the_others(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """150 other processes call the service and fail: each kind keeps its newest 128, so the
        callers are still seen by a failure that may isolate its process."""
        app = make_redis_breaker(max_failures=10**6, min_failing_processes=2)
        redis_backend(app).refresher.stop(5)
        app.record_failure("svc", "timeout")
        for k in range(150):
            _run_as(app, "svc", "acquire", f"other-{k}")
            _run_as(app, "svc", "failure", f"other-{k}")
        reply = Reply.parse(_run_as(app, "svc", "failure", "last", isolating="failures:1000"))
        assert reply.failing_processes == 128
        assert reply.others_seen is True
        assert _members(redis_server, app, "svc") == 128 + 128 + 1  # callers, failing, isolated


class TestWindow:
    def test_failing_processes_count_inside_their_window(
        self, make_redis_breaker: MakeRedisBreaker, clock: ManualClock
    ) -> None:
        app = make_redis_breaker(max_failures=10**6, window_seconds=10, min_failing_processes=5)
        app.record_failure("svc", "timeout")
        _run_as(app, "svc", "failure", "early")
        clock.advance(6)
        _run_as(app, "svc", "failure", "later")
        assert app.state("svc").failing_processes == 3
        clock.advance(5)  # "early" and this process failed 11 s ago: out of the window
        assert app.state("svc").failing_processes == 1
        app.record_failure("svc", "timeout")
        assert app.state("svc").failing_processes == 2

    def test_who_left_the_window_is_dropped_when_a_process_joins(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer, clock: ManualClock
    ) -> None:
        app = make_redis_breaker(max_failures=10**6, window_seconds=10, min_failing_processes=2)
        app.record_failure("svc", "timeout")
        for k in range(30):  # 30 processes that called, 10 of them failing, then went away
            _run_as(app, "svc", "acquire", f"gone-{k}")
            if k % 3 == 0:
                _run_as(app, "svc", "failure", f"gone-{k}")
        assert _members(redis_server, app, "svc") == 41
        clock.advance(11)
        _run_as(app, "svc", "failure", "new")  # a new process: its first failure
        assert _members(redis_server, app, "svc") == 1  # its failure; this process left the window too
        assert app.state("svc").failing_processes == 1

    def test_a_service_that_never_fails_keeps_no_departed_callers(
        self,
        make_redis_breaker: MakeRedisBreaker,
        redis_server: RedisServer,
        clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Under a rate policy the successes' flush marks each caller: the callers that left the
        window are dropped by the flushes too (no failure ever runs the script's trim)."""
        monkeypatch.setattr(_buckets, "TRIM_EVERY", 1)  # (every 50th flush, at a 0.2 s interval)
        rate = ServicePolicy(max_failures=None, failure_rate_threshold=0.5, window_seconds=10)
        app = make_redis_breaker(service_policies={"svc": rate}, max_failures=5)
        app.execute("svc", lambda: None)
        for k in range(30):
            _run_as(app, "svc", "acquire", f"gone-{k}")
        clock.advance(11)
        assert _members(redis_server, app, "svc") >= 30
        flusher = _buckets.flusher_for(redis_backend(app).store)
        flushes = flusher.flushes
        app.execute("svc", lambda: None)
        assert wait_for(lambda: flusher.flushes > flushes)
        assert _members(redis_server, app, "svc") == 1  # this process, which called just now


class TestExpiry:
    def test_the_reporters_and_the_rate_buckets_outlive_what_they_hold(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A run that writes the reporters or the rate buckets leaves them at least the window to
        live (an isolated process's mark: until its first trial), however short their expiry
        had become, and a flush of successes never cuts it; Redis expires keys by its own clock,
        so the test reads their ``PTTL``."""
        rate = ServicePolicy(
            max_failures=None,
            failure_rate_threshold=0.5,
            minimum_calls=10**6,
            window_seconds=60,
            max_open_seconds=600,
        )
        app = make_redis_breaker(service_policies={"svc": rate})
        app.record_failure("svc", "timeout")
        keys = redis_backend(app).store.circuits["svc"].keys
        calls, reporters = keys[3], keys[4]
        client = redis_server.client()
        assert client.pttl(calls) >= 60_000
        assert client.pttl(reporters) >= 60_000
        for key in (calls, reporters):
            client.pexpire(key, 5_000)  # (an expiry that falls short, set by someone else)
        app.record_failure("svc", "timeout")
        assert client.pttl(calls) >= 60_000
        assert client.pttl(reporters) >= 60_000
        # Another process isolated for 10 minutes (its longest open time): its mark counts until
        # then (and its trial's grace), through this process's flushes of successes too.
        _run_as(app, "svc", "failure", "isolated", isolating="failure_rate:600000")
        assert client.pttl(reporters) >= 600_000
        flusher = _buckets.flusher_for(redis_backend(app).store)
        flushes = flusher.flushes
        app.execute("svc", lambda: None)
        assert wait_for(lambda: flusher.flushes > flushes)
        assert client.pttl(reporters) >= 600_000
        # this process calling and failing, the other one failing and isolated
        assert client.zcard(reporters) == 4
