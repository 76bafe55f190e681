"""Rate triggers, slow calls and disable on Redis: fleet-wide, exact, and free on the healthy path."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit.backends.redis._buckets import FLUSH_INTERVAL, flusher_for
from tnm.circuit.testing import ManualClock

from ..redis_server import RedisServer
from .helpers import commands_sent_here, redis_backend, wait_for

RATE = {"window_seconds": 3600, "open_seconds": 3600, "max_failures": None, "minimum_calls": 10}


def _breaker(url: str, namespace: str, **policy: Any) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "redis", redis_url=url, namespace=namespace, default_policy=ServicePolicy(**{**RATE, **policy})
    )
    breaker.initialize()
    return breaker


def _boom() -> None:
    raise OSError("down")


def _send(url: str, namespace: str, pattern: str, threshold: float, barrier: Any, results: Any) -> None:
    """One process of the fleet: ``pattern`` calls (S ok, F failing), then report what it sees."""
    breaker = _breaker(url, namespace, failure_rate_threshold=threshold)
    circuit = breaker._circuit("svc")
    barrier.wait(60)  # everyone ready: send at once
    for step in pattern:
        with contextlib.suppress(OSError, CircuitOpenError):
            breaker.execute("svc", _boom if step == "F" else (lambda: None))
    barrier.wait(60)  # everyone done: what does each process see now?
    # a notice may be in flight, or a rate decision deferred 0.25 s for the others' successes
    wait_for(lambda: circuit.state is not CircuitState.CLOSED, timeout=3.0)
    results.put(circuit.state.value)
    breaker.close()


def _fleet(url: str, namespace: str, patterns: list[str], threshold: float) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(patterns)), ctx.Queue()
    procs = [
        ctx.Process(target=_send, args=(url, namespace, p, threshold, barrier, results)) for p in patterns
    ]
    for p in procs:
        p.start()
    seen = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return seen


class TestFleetRate:
    def test_40_percent_failing_across_4_processes_stays_closed(self, redis_url: str) -> None:
        """4 processes x 50 calls, 40% failing, threshold 0.5: the circuit stays closed everywhere."""
        seen = _fleet(redis_url, "fleet40", ["SSFSF" * 10] * 4, 0.5)
        assert seen == ["closed"] * 4
        check = _breaker(redis_url, "fleet40", failure_rate_threshold=0.5)
        snap = check.state("svc")
        check.close()
        assert snap.state is CircuitState.CLOSED
        assert (snap.failures, snap.failure_rate) == (80, pytest.approx(0.4, abs=0.01))

    def test_60_percent_failing_across_4_processes_opens_for_all(self, redis_url: str) -> None:
        """The same at 60% failing: the circuit opens, and every process sees it open."""
        seen = _fleet(redis_url, "fleet60", ["FSFSF" * 10] * 4, 0.5)
        assert seen == ["open"] * 4

    def test_a_success_only_process_keeps_the_fleet_closed(self, redis_url: str) -> None:
        """Another process's successes (sent in the background) outweigh one process's failures."""
        healthy = _breaker(redis_url, "mixed", failure_rate_threshold=0.5)
        for _ in range(100):
            healthy.execute("svc", lambda: None)
        raw = healthy.backend.client()  # type: ignore[attr-defined]
        key = healthy.backend.circuits["svc"].keys[3]  # type: ignore[attr-defined]
        assert wait_for(lambda: sum(int(v) for v in raw.hvals(key)) == 100, timeout=10)
        flaky = _breaker(redis_url, "mixed", failure_rate_threshold=0.5)
        for _ in range(10):
            with pytest.raises(OSError):
                flaky.execute("svc", _boom)
        # Its own 10 of 10 failed: it alone is isolated (the fleet's circuit stays closed).
        with pytest.raises(CircuitOpenError) as rejected:
            flaky.execute("svc", _boom)
        assert rejected.value.opened_by == "process"
        snap = healthy.state("svc")
        assert (snap.state, snap.calls, snap.failures) == (CircuitState.CLOSED, 110, 10)
        # Without the fleet's successes, 10 failures out of 10 would have opened it.
        alone = _breaker(redis_url, "alone", failure_rate_threshold=0.5)
        for _ in range(10):
            with pytest.raises(OSError):
                alone.execute("svc", _boom)
        assert alone.state("svc").state is CircuitState.OPEN
        for breaker in (healthy, flaky, alone):
            breaker.close()

    def test_a_burst_below_minimum_calls_cannot_open(self, redis_url: str) -> None:
        """9 failures from one process, fewer than minimum_calls fleet-wide, leave the circuit closed."""
        burst = _breaker(redis_url, "burst", failure_rate_threshold=0.5)
        for _ in range(9):
            with pytest.raises(OSError):
                burst.execute("svc", _boom)
        assert burst.state("svc").state is CircuitState.CLOSED
        burst.close()


class TestBackgroundSuccesses:
    def test_successes_reach_redis_within_the_flush_interval(self, redis_url: str) -> None:
        """Counted successes are in Redis within FLUSH_INTERVAL plus a round trip (0.5 s slack for load)."""
        breaker = _breaker(redis_url, "stale", failure_rate_threshold=0.5)
        breaker.execute("svc", lambda: None)
        raw = breaker.backend.client()  # type: ignore[attr-defined]
        key = breaker.backend.circuits["svc"].keys[3]  # type: ignore[attr-defined]
        assert wait_for(lambda: raw.exists(key) == 1, timeout=10)
        worst = 0.0
        for round_ in range(1, 4):
            for _ in range(50):
                breaker.execute("svc", lambda: None)
            counted = time.monotonic()
            assert wait_for(lambda r=round_: sum(int(v) for v in raw.hvals(key)) == 1 + 50 * r, timeout=10)
            worst = max(worst, time.monotonic() - counted)
        breaker.close()
        assert worst <= FLUSH_INTERVAL + 0.5

    def test_healthy_calls_cost_at_most_2_commands_per_100_calls(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """At about 5,000 calls/s for a second, every command the process sends (flushes, refreshes
        included) is at most 0.02 per call, and no call waits for Redis.

        The commands go by time (a flush every 0.2 s), the calls by this machine's speed: the
        bound is 0.02 per call at 5,000 calls a second of the loop's time (a busy machine makes
        fewer calls in it, not more commands)."""
        breaker = _breaker(redis_url, "cost", failure_rate_threshold=0.5)
        protected = breaker.protect("svc")(lambda: None)
        protected()
        info = redis_server.client()
        before = int(info.info("stats")["total_commands_processed"])
        calls, start = 0, time.monotonic()
        while time.monotonic() - start < 1.0:
            for _ in range(50):
                protected()
            calls += 50
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        breaker.close()  # its last flush included
        after = int(info.info("stats")["total_commands_processed"])
        commands = after - before - 1  # the INFO that read `before`
        assert calls >= 1000
        assert commands <= 0.02 * 5000 * elapsed, (commands, calls, elapsed)

    def test_disable_is_fleet_wide_and_costs_nothing_per_call(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """disable() in one process lets every process's calls through, with no command per failure."""
        ops = _breaker(redis_url, "dis", failure_rate_threshold=0.5)
        app = _breaker(redis_url, "dis", max_failures=2)
        for _ in range(2):
            with pytest.raises(OSError):
                app.execute("svc", _boom)
        assert app.state("svc").state is CircuitState.OPEN
        ops.disable("svc", reason="flaky, keep calling")
        circuit = app.backend.circuits["svc"]  # type: ignore[attr-defined]
        assert wait_for(lambda: circuit.state is CircuitState.DISABLED)
        with commands_sent_here(monkeypatch) as sent:
            for _ in range(20):
                with pytest.raises(OSError):
                    app.execute("svc", _boom)
        assert sent == []  # none per call (the background threads' reads aside)
        snap = app.state("svc")
        assert (snap.state, snap.last_failure["reason"]) == (CircuitState.DISABLED, "flaky, keep calling")  # type: ignore[index]
        ops.reset("svc")
        assert wait_for(lambda: circuit.state is CircuitState.CLOSED)
        for breaker in (ops, app):
            breaker.close()


def _child_succeeds(breaker: CircuitBreaker, count: int, done: Any) -> None:
    time.sleep(2 * FLUSH_INTERVAL)  # as on a loaded host: a running parent flusher would send now
    for _ in range(count):
        breaker.execute("svc", lambda: None)
    breaker.close()  # the last flush
    done.put("ok")


class TestAfterFork:
    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
    def test_a_forked_child_sends_its_own_successes_once(self, redis_url: str) -> None:
        """A breaker made before fork(): the child's successes reach Redis; the parent's are sent once."""
        breaker = _breaker(redis_url, "forked-rates", failure_rate_threshold=0.5)
        # The circuit first: registering a circuit starts the flusher (a first call after
        # close() included), which would send the parent's successes while the child runs.
        breaker._circuit("svc")
        flusher = flusher_for(redis_backend(breaker).store)
        flusher.stop(5)  # the parent's 10 successes stay unsent until after the fork
        for _ in range(10):
            breaker.execute("svc", lambda: None)
        ctx = multiprocessing.get_context("fork")
        done = ctx.Queue()
        child = ctx.Process(target=_child_succeeds, args=(breaker, 25, done))
        child.start()
        assert done.get(timeout=30) == "ok"
        child.join(timeout=30)
        assert child.exitcode == 0
        raw = breaker.backend.client()  # type: ignore[attr-defined]
        key = breaker.backend.circuits["svc"].keys[3]  # type: ignore[attr-defined]
        assert sum(int(v) for v in raw.hvals(key)) == 25
        flusher.flush()
        assert sum(int(v) for v in raw.hvals(key)) == 35
        breaker.close()  # a last flush: nothing left to send
        assert sum(int(v) for v in raw.hvals(key)) == 35


class TestWhileRedisIsDown:
    def test_the_process_decides_on_its_own_rate(self, redis_url: str, redis_server: RedisServer) -> None:
        """With Redis down, a rate policy still counts this process's calls: successes keep a
        low failure rate closed, and a high one opens the circuit."""
        breaker = CircuitBreaker(
            "redis",
            redis_url=redis_url,
            namespace="down",
            socket_timeout=0.2,
            default_policy=ServicePolicy(**{**RATE, "failure_rate_threshold": 0.5}),
        )
        breaker.initialize()
        breaker.execute("svc", lambda: None)
        redis_server.stop()
        with pytest.raises(OSError):
            breaker.execute("svc", _boom)  # notices the outage
        assert not breaker.storage_available
        for _ in range(12):
            breaker.execute("svc", lambda: None)
        for _ in range(4):
            with pytest.raises(OSError):
                breaker.execute("svc", _boom)
        snap = breaker.state("svc")  # this process's own view
        assert (snap.state, snap.calls, snap.failures) == (CircuitState.CLOSED, 17, 5)
        for _ in range(12):
            with contextlib.suppress(OSError, CircuitOpenError):
                breaker.execute("svc", _boom)
        assert breaker.state("svc").state is CircuitState.OPEN
        breaker.close()


class TestObserveOnRedis:
    def test_open_circuit_runs_calls_without_a_round_trip(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Observe mode on Redis: an open circuit runs every call, reports would_reject, asks nothing."""
        from tnm.circuit import EventKind
        from tnm.circuit.testing import capture_events

        breaker = _breaker(redis_url, "observe", max_failures=2, mode="observe")
        for _ in range(2):
            with pytest.raises(OSError):
                breaker.execute("svc", _boom)
        assert breaker.state("svc").state is CircuitState.OPEN
        with capture_events(breaker) as events, commands_sent_here(monkeypatch) as sent:
            results = [breaker.execute("svc", lambda: "ran") for _ in range(20)]
        breaker.close()
        assert results == ["ran"] * 20
        assert [e.kind for e in events] == [EventKind.WOULD_REJECT] * 20
        assert sent == []  # the background threads' reads aside


class LocalAndRedisAgreeOnRates(RuleBasedStateMachine):
    """Random calls, slow calls, time steps and overrides give the same states and rates on both backends."""

    server: RedisServer

    @initialize(
        failure_rate=st.sampled_from([None, 0.5, 1.0]),
        slow_rate=st.sampled_from([None, 0.3]),
        max_failures=st.sampled_from([None, 2, 3]),
        minimum_calls=st.integers(1, 4),
        window=st.sampled_from([1.0, 5.0]),
        open_seconds=st.sampled_from([0.0, 1.0]),
    )
    def setup(
        self,
        failure_rate: float | None,
        slow_rate: float | None,
        max_failures: int | None,
        minimum_calls: int,
        window: float,
        open_seconds: float,
    ) -> None:
        if failure_rate is None and slow_rate is None:
            failure_rate = 0.5
        policy = ServicePolicy(
            window_seconds=window,
            max_failures=max_failures,
            open_seconds=open_seconds,
            failure_rate_threshold=failure_rate,
            slow_call_seconds=1.0,
            slow_call_rate_threshold=slow_rate,
            minimum_calls=minimum_calls,
        )
        self.server.client().flushall()
        self.clock = ManualClock()
        self.local = CircuitBreaker(clock=self.clock, default_policy=policy)
        self.shared = CircuitBreaker(
            "redis", clock=self.clock, default_policy=policy, redis_url=self.server.url, namespace="eqr"
        )
        self.shared.initialize()
        self.shared._circuit("svc")
        self.flusher = flusher_for(redis_backend(self.shared).store)
        self.flusher.stop(5)  # flushed by the rules, at a known time
        self.trials: list[tuple[int, int]] = []

    def teardown(self) -> None:
        if hasattr(self, "shared"):
            self.shared.close()

    def _both(self, method: str, *args: Any) -> None:
        getattr(self.local._circuit("svc"), method)(*args)
        getattr(self.shared._circuit("svc"), method)(*args)

    @rule(step=st.sampled_from([0.0, 0.1, 0.3, 1.0, 2.5]))
    def advance(self, step: float) -> None:
        self.clock.advance(step)

    @rule()
    def success(self) -> None:
        self.local.record_success("svc")
        self.shared.record_success("svc")
        self.flusher.flush()

    @rule()
    def unflushed_success(self) -> None:
        """A success the flusher has not sent yet: the next failure carries it."""
        self.local.record_success("svc")
        self.shared.record_success("svc")

    @rule(slow=st.booleans())
    def failure(self, slow: bool) -> None:
        self._both("on_failure", 0, "f", slow)

    @rule()
    def slow_success(self) -> None:
        self._both("on_slow_success", 0)

    @rule()
    def acquire(self) -> None:
        a = self.local._circuit("svc").acquire()
        b = self.shared._circuit("svc").acquire()
        assert (a > 0, a == 0) == (b > 0, b == 0)
        if a > 0:
            self.trials.append((a, b))

    @precondition(lambda self: self.trials)
    @rule(outcome=st.sampled_from(["ok", "slow", "failed"]))
    def finish(self, outcome: str) -> None:
        a, b = self.trials.pop()
        for circuit, token in ((self.local._circuit("svc"), a), (self.shared._circuit("svc"), b)):
            if outcome == "ok":
                circuit.on_success(token)
            elif outcome == "slow":
                circuit.on_slow_success(token)
            else:
                circuit.on_failure(token, "t")

    @rule()
    def disable(self) -> None:
        self.local.disable("svc", "ops")
        self.shared.disable("svc", "ops")
        self.trials.clear()

    @rule()
    def force_open(self) -> None:
        self.local.force_open("svc", "ops")
        self.shared.force_open("svc", "ops")
        self.trials.clear()

    @rule()
    def reset(self) -> None:
        self.local.reset("svc")
        self.shared.reset("svc")
        self.trials.clear()

    @invariant()
    def same_view(self) -> None:
        if not hasattr(self, "shared"):
            return
        self.flusher.flush()
        local, shared = self.local.state("svc"), self.shared.state("svc")
        assert shared.state is local.state
        assert shared.retry_after == pytest.approx(local.retry_after)
        assert self.shared.is_available("svc") == self.local.is_available("svc")
        # In every state: the live window while closed, the figures that opened it otherwise.
        assert shared.opened_by == local.opened_by
        assert (shared.failures, shared.calls) == (local.failures, local.calls)
        assert shared.failure_rate == local.failure_rate
        assert shared.slow_call_rate == local.slow_call_rate


def test_local_and_redis_agree_on_rates(redis_server: RedisServer) -> None:
    """Hypothesis: the same random events drive both backends to the same states and rates."""
    redis_server.start() if redis_server.process is None else None
    LocalAndRedisAgreeOnRates.server = redis_server
    machine = LocalAndRedisAgreeOnRates.TestCase
    machine.settings = settings(
        max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine("runTest").runTest()
