"""Exactness across processes and equivalence with the local backend, on a real redis-server."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit.backends import CircuitHandle
from tnm.circuit.testing import ManualClock, fake_redis_breaker

from ..redis_server import RedisServer

PROCESSES = 6
FAKE_EXAMPLES = 300
"""Examples of the local-versus-Redis machine on fakeredis (in process, so many more than on a server)."""


def _handle(breaker: CircuitBreaker, service: str = "svc") -> CircuitHandle:
    """``service``'s handle through the public API (a first look makes it if needed)."""
    if service not in breaker.circuits():
        breaker.is_available(service)
    return breaker.circuits()[service]


def _fail_many(url: str, count: int, start: Any) -> None:
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace="exact",
        default_policy=ServicePolicy(window_seconds=3600, max_failures=120),
    )
    breaker.initialize()
    start.wait(10)
    for _ in range(count):
        breaker.record_failure("svc", "x")
    breaker.close()


def _take_permit(url: str, start: Any, results: Any) -> None:
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace="exact",
        default_policy=ServicePolicy(max_failures=1, open_seconds=0.05, half_open_max_calls=2),
    )
    breaker.initialize()
    start.wait(10)
    taken = 0
    for _ in range(20):
        if _handle(breaker).acquire() > 0:  # a trial that never reports back
            taken += 1
    results.put(taken)
    breaker.close()


class TestAcrossProcesses:
    @pytest.mark.parametrize(("total", "opens"), [(119, False), (120, True)])
    def test_threshold_is_exact(self, redis_url: str, total: int, opens: bool) -> None:
        """119 failures from 6 processes leave a 120-threshold circuit closed; 120 open it."""
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Event()
        shares = [total // PROCESSES + (1 if i < total % PROCESSES else 0) for i in range(PROCESSES)]
        procs = [ctx.Process(target=_fail_many, args=(redis_url, n, start)) for n in shares]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        breaker = CircuitBreaker(
            "redis", redis_url=redis_url, namespace="exact",
            default_policy=ServicePolicy(window_seconds=3600, max_failures=120),
        )  # fmt: skip
        breaker.initialize()
        snap = breaker.state("svc")
        breaker.close()
        assert (snap.state is CircuitState.OPEN) is opens
        if not opens:
            assert snap.failures == total

    def test_half_open_permits_are_exact_fleet_wide(self, redis_url: str) -> None:
        """6 processes racing for trial permits: exactly half_open_max_calls are handed out."""
        setup = CircuitBreaker(
            "redis", redis_url=redis_url, namespace="exact",
            default_policy=ServicePolicy(max_failures=1, open_seconds=0.05, half_open_max_calls=2),
        )  # fmt: skip
        setup.initialize()
        setup.record_failure("svc", "x")
        setup.close()
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Event()
        results = ctx.Queue()
        procs = [ctx.Process(target=_take_permit, args=(redis_url, start, results)) for _ in range(PROCESSES)]
        for p in procs:
            p.start()
        start.set()
        taken = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert sum(taken) == 2


def _child_uses_inherited_breaker(breaker: CircuitBreaker, queue: Any) -> None:
    try:
        breaker.record_failure("forked", "from child")
        queue.put(("ok", os.getpid(), breaker.state("forked").failures))
    except BaseException as exc:  # report, the parent asserts
        queue.put(("error", repr(exc), 0))


class TestFork:
    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
    def test_breaker_works_in_forked_child(self, redis_url: str) -> None:
        """A breaker created before fork() (Celery prefork, gunicorn) works in the child."""
        breaker = CircuitBreaker("redis", redis_url=redis_url, namespace="forked")
        breaker.initialize()
        breaker.record_failure("forked", "from parent")
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_uses_inherited_breaker, args=(breaker, queue))
        child.start()
        status, pid, failures = queue.get(timeout=30)
        child.join(timeout=30)
        assert status == "ok", pid
        assert failures == 2
        assert breaker.state("forked").failures == 2
        breaker.close()


class LocalAndRedisAgree(RuleBasedStateMachine):
    """Random event sequences give the same states on the local and the Redis backend."""

    server: RedisServer

    @initialize(
        policy=st.builds(
            ServicePolicy,
            window_seconds=st.sampled_from([1.0, 5.0]),
            max_failures=st.integers(1, 3),
            open_seconds=st.sampled_from([0.0, 1.0, 3.0]),
            half_open_max_calls=st.integers(1, 2),
            success_threshold=st.integers(1, 2),
            backoff_multiplier=st.sampled_from([1.0, 2.0]),
            max_open_seconds=st.just(10.0),
            trial_timeout_seconds=st.sampled_from([2.0, 5.0]),
        )
    )
    def setup(self, policy: ServicePolicy) -> None:
        self.clock = ManualClock()
        self.local = CircuitBreaker(clock=self.clock, default_policy=policy)
        self.shared = self.make_shared(policy)
        self.trials: list[tuple[int, int]] = []

    def make_shared(self, policy: ServicePolicy) -> CircuitBreaker:
        """The Redis-backend breaker under test, on a clean store."""
        self.server.client().flushall()
        shared = CircuitBreaker(
            "redis", clock=self.clock, default_policy=policy, redis_url=self.server.url, namespace="eq"
        )
        shared.initialize()
        return shared

    def teardown(self) -> None:
        if hasattr(self, "shared"):
            self.shared.close()

    def _both(self, method: str, *args: Any) -> None:
        getattr(self.local, method)("svc", *args)
        getattr(self.shared, method)("svc", *args)

    @rule(step=st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0]))
    def advance(self, step: float) -> None:
        self.clock.advance(step)

    @rule()
    def failure(self) -> None:
        self._both("record_failure", "f")

    @rule()
    def success(self) -> None:
        self._both("record_success")

    @rule()
    def call(self) -> None:
        outcomes = []
        for breaker in (self.local, self.shared):
            try:
                breaker.execute("svc", lambda: None)
                outcomes.append("ran")
            except CircuitOpenError:
                outcomes.append("rejected")
        assert outcomes[0] == outcomes[1]

    @rule()
    def acquire(self) -> None:
        a = _handle(self.local).acquire()
        b = _handle(self.shared).acquire()
        assert (a > 0, a == 0) == (b > 0, b == 0)
        if a > 0:
            self.trials.append((a, b))

    @precondition(lambda self: self.trials)
    @rule(ok=st.booleans())
    def finish(self, ok: bool) -> None:
        a, b = self.trials.pop()
        if ok:
            _handle(self.local).on_success(a)
            _handle(self.shared).on_success(b)
        else:
            _handle(self.local).on_failure(a, "t")
            _handle(self.shared).on_failure(b, "t")

    @rule()
    def force_open(self) -> None:
        self._both("force_open", "ops")

    @rule()
    def reset(self) -> None:
        self._both("reset")

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "shared"):
            return
        local, shared = self.local.state("svc"), self.shared.state("svc")
        assert shared.state is local.state
        assert shared.retry_after == pytest.approx(local.retry_after)
        assert self.shared.is_available("svc") == self.local.is_available("svc")
        # Why it opened, and one number for failures, whatever the state.
        assert (shared.opened_by, shared.failures) == (local.opened_by, local.failures)


def test_local_and_redis_agree(redis_server: RedisServer) -> None:
    """Hypothesis: the same random events drive both backends to the same states."""
    redis_server.start() if redis_server.process is None else None
    LocalAndRedisAgree.server = redis_server
    state_machine = LocalAndRedisAgree.TestCase
    state_machine.settings = settings(
        max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
    )
    state_machine("runTest").runTest()


class LocalAndFakeRedisAgree(LocalAndRedisAgree):
    """The same machine with the Redis backend on fakeredis: the real Lua script, in process."""

    def make_shared(self, policy: ServicePolicy) -> CircuitBreaker:
        return fake_redis_breaker(clock=self.clock, default_policy=policy, namespace="eq")


@pytest.mark.timeout(300)  # about 15 s alone; a busy machine may take several times that
def test_local_and_fake_redis_agree() -> None:
    """Hypothesis, many more examples in process: the script on fakeredis agrees with the local backend."""
    state_machine = LocalAndFakeRedisAgree.TestCase
    state_machine.settings = settings(
        max_examples=FAKE_EXAMPLES,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    state_machine("runTest").runTest()
