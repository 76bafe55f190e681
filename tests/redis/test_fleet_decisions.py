"""Fleet decisions with one sick process: real processes on a real redis-server, started as in a deploy."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tnm.circuit import CircuitBreaker, CircuitEvent, CircuitOpenError, CircuitState, EventKind, ServicePolicy
from tnm.circuit.backends.redis._isolation import Isolation
from tnm.circuit.testing import ManualClock

from .helpers import ROOT, Traffic, wait_for

RATE_50 = {
    "window_seconds": 10,
    "open_seconds": 10,
    "max_failures": None,
    "failure_rate_threshold": 0.5,
    "minimum_calls": 20,
}


class Fleet(Traffic):
    """``tests/redis/fleet_worker.py`` processes, each with its own SICK file (its calls fail while it
    exists); reading their lines and stopping them as ``Traffic`` does."""

    def __init__(
        self, url: str, namespace: str, seconds: float, processes: int, policy: dict[str, Any]
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-"))
        self.go = self.dir / "go"
        self.recover = self.dir / "recover"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.redis.fleet_worker",
                    url,
                    namespace,
                    str(seconds),
                    json.dumps(policy),
                    str(self.sick_file(i)),
                    str(self.recover),
                    str(self.go),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(processes)
        ]

    def sick_file(self, index: int) -> Path:
        return self.dir / f"sick-{index}"

    def start(self) -> float:
        """Every process calls from now on (the wall time returned)."""
        self.wait_ready()
        self.go.touch()
        return time.time()

    def results(self, timeout: float = 60) -> list[dict[str, Any]]:
        results = super().results(timeout)
        for result in results:
            assert result["foreign"] == []
        return results


@contextmanager
def fleet(
    url: str, namespace: str, seconds: float, processes: int, policy: dict[str, Any]
) -> Iterator[Fleet]:
    running = Fleet(url, namespace, seconds, processes, policy)
    try:
        yield running
    finally:
        running.stop()


def with_one_sick(
    url: str, namespace: str, policy: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """4 processes started together for 3 s, the last failing every call: (healthy, sick) results;
    the healthy three never see a rejection."""
    with fleet(url, namespace, 3.0, 4, policy) as running:
        running.sick_file(3).touch()
        running.start()
        results = running.results()
    healthy, sick = results[:3], results[3]
    assert [len(outcomes(r, "rejected")) for r in healthy] == [0, 0, 0]
    return healthy, sick


def outcomes(result: dict[str, Any], outcome: str) -> list[list[Any]]:
    return [call for call in result["calls"] if call[1] == outcome]


@pytest.mark.slow
class TestOneSickProcessAtADeploy:
    @pytest.mark.parametrize("deploy", range(3))
    def test_a_50_percent_rate_never_opens_for_the_healthy_three(self, redis_url: str, deploy: int) -> None:
        """4 processes started together, one failing every call: the fleet's 25% never opens a 50% circuit."""
        healthy, sick = with_one_sick(redis_url, f"deploy{deploy}", RATE_50)
        assert all(len(outcomes(r, "ok")) > 100 for r in healthy)
        assert sick["snapshot"]["failing_processes"] in (1, None)  # None: read while isolated alone
        assert [r["snapshot"]["state"] for r in healthy] == ["closed"] * 3

    def test_after_a_close_the_window_starts_empty_and_still_never_opens(self, redis_url: str) -> None:
        """An operator's reset mid-traffic empties the window: the sick process still cannot open it."""
        with fleet(redis_url, "after-close", 3.0, 4, RATE_50) as running:
            running.sick_file(3).touch()
            t0 = running.start()
            operator = CircuitBreaker("redis", redis_url=redis_url, namespace="after-close")
            try:
                for moment in (1.0, 1.7, 2.4):
                    wait_until(t0 + moment)
                    operator.reset("svc")  # closes it: the rate window starts again
            finally:
                operator.close()
            results = running.results()
        assert [len(outcomes(r, "rejected")) for r in results[:3]] == [0, 0, 0]


COUNT_5 = {"window_seconds": 10, "open_seconds": 1, "max_failures": 5}


@pytest.mark.slow
class TestTheSickProcessIsIsolated:
    @pytest.mark.parametrize("policy", [COUNT_5, {**RATE_50, "open_seconds": 1}], ids=["count", "rate"])
    def test_the_sick_process_alone_is_rejected_within_its_threshold(
        self, redis_url: str, policy: dict[str, Any]
    ) -> None:
        """One of 4 processes fails every call: it alone is isolated, within its own threshold."""
        _, sick = with_one_sick(redis_url, f"isolate-{len(policy)}", policy)
        calls = sick["calls"]
        first = next(i for i, call in enumerate(calls) if call[1] == "rejected")
        threshold = policy.get("max_failures") or policy["minimum_calls"]
        assert first <= threshold  # failing calls before its first rejection
        rejected = outcomes(sick, "rejected")
        assert {call[2] for call in rejected} == {"process"}
        assert len(rejected) > len(calls) / 2  # trials only, once its open time is over


QUORUM_2 = {"window_seconds": 10, "open_seconds": 1.5, "max_failures": 5, "min_failing_processes": 2}


def first(calls: list[list[Any]], outcome: str, after: float = 0.0) -> int | None:
    """Index of the first call with ``outcome`` made after the wall time ``after``."""
    return next((i for i, c in enumerate(calls) if c[0] >= after and c[1] == outcome), None)


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


@pytest.mark.slow
class TestQuorum:
    def test_one_sick_process_is_isolated_two_open_the_fleet_and_recovery_closes_all(
        self, redis_url: str
    ) -> None:
        """k=2: one sick process is isolated; a second opens the fleet; recovery closes every circuit."""
        with fleet(redis_url, "quorum", 7.0, 4, QUORUM_2) as running:
            running.sick_file(3).touch()
            t0 = running.start()
            wait_until(t0 + 2.0)
            running.sick_file(2).touch()
            wait_until(t0 + 3.0)
            running.recover.touch()
            results = running.results()
        # Phase 1: one sick process of four. The healthy three never see the circuit open.
        for healthy in results[:3]:
            assert [c for c in healthy["calls"] if c[0] < t0 + 2.0 and c[1] == "rejected"] == []
        sick = results[3]["calls"]
        rejected = first(sick, "rejected")
        assert rejected is not None
        assert rejected <= QUORUM_2["max_failures"]  # isolated within its threshold
        assert sick[rejected][2] == "process"
        # Phase 2: a second process fails: it is isolated within its threshold, and with two
        # processes isolated at once the fleet's circuit opens (for the healthy two as well).
        # Its calls after the touch begin with the successes it made before it saw the file (a
        # busy machine may run a few): its failures before the first rejection are what count.
        second = [c for c in results[2]["calls"] if c[0] >= t0 + 2.0]
        completes = first(second, "rejected")
        assert completes is not None
        failures = [c for c in second[:completes] if c[1] == "fail"]
        assert 0 < len(failures) <= QUORUM_2["max_failures"]
        quorum_met = failures[-1][0]  # the failure that completed the quorum ended then
        for healthy in results[:2]:
            opened = first(healthy["calls"], "rejected", t0 + 2.0)
            assert opened is not None
            assert healthy["calls"][opened][2] == "failures"  # the fleet's circuit, not isolation
            # on the notice (a few of its 50 calls a second later; within a second on a busy
            # machine: without the notice it would wait for a full read, minutes away)
            assert healthy["calls"][opened][0] - quorum_met < 1.0
        # Phase 3: the trouble is over: the fleet's circuit and the isolated ones are closed.
        for result in results:
            assert [c for c in result["calls"] if c[0] >= t0 + 5.5 and c[1] != "ok"] == []
            assert result["snapshot"]["state"] == "closed"


def _boom() -> None:
    raise OSError("down")


class TestQuorumOnOneServer:
    """Two breakers on one server are two reporters (each its own backend): fast, exact checks."""

    def test_one_failing_reporter_cannot_open_a_quorum_of_two(
        self, make_redis_breaker: Callable[..., CircuitBreaker]
    ) -> None:
        """k=2: one failing reporter is isolated, the fleet stays closed; a second one opens it."""
        one = make_redis_breaker(max_failures=3, min_failing_processes=2)
        two = make_redis_breaker(max_failures=3, min_failing_processes=2)
        two.execute("svc", lambda: None)  # another reporter calls the service
        for _ in range(3):
            with pytest.raises(OSError):
                one.execute("svc", _boom)
        snap = two.state("svc")
        assert (snap.state, snap.failing_processes) == (CircuitState.CLOSED, 1)
        with pytest.raises(CircuitOpenError) as isolated:
            one.execute("svc", _boom)
        assert isolated.value.opened_by == "process"
        assert one.state("svc").opened_by == "process"
        with pytest.raises(OSError):
            two.execute("svc", _boom)  # a second failing reporter, three failures in a row
        assert two.state("svc").state is CircuitState.OPEN
        assert two.state("svc").failing_processes == 2

    def test_own_successes_between_own_failures_never_isolate(
        self, make_redis_breaker: Callable[..., CircuitBreaker]
    ) -> None:
        """Count policy: a process failing every other call is never isolated, whoever clears the count."""
        one = make_redis_breaker(max_failures=3)
        two = make_redis_breaker(max_failures=3)
        outcomes = iter([True, False] * 10)

        @one.protect("svc")
        def flaky() -> None:
            if next(outcomes):
                raise OSError("down")

        two.execute("svc", lambda: None)
        mine, theirs = (b.backend.circuits["svc"] for b in (one, two))  # type: ignore[attr-defined]
        for _ in range(10):
            with pytest.raises(OSError):
                flaky()
            assert wait_for(lambda: theirs.dirty)  # the other process heard of the failure
            two.execute("svc", lambda: None)  # its success clears the fleet's count
            assert wait_for(lambda: mine._failures == 0)  # and this process heard that
            flaky()  # its own success: must clear its own count too
        assert one.state("svc").state is CircuitState.CLOSED

    def test_an_isolation_is_one_state_change_event_and_one_warning(
        self, make_redis_breaker: Callable[..., CircuitBreaker], caplog: pytest.LogCaptureFixture
    ) -> None:
        """The isolated process emits STATE_CHANGE closed -> open (trigger process) and one WARNING line."""
        one = make_redis_breaker(max_failures=3, min_failing_processes=2)
        two = make_redis_breaker(max_failures=3, min_failing_processes=2)
        events: list[CircuitEvent] = []
        one.add_listener(events.append)
        two.execute("svc", lambda: None)
        with caplog.at_level(logging.INFO, logger="tnm.circuit"):
            for _ in range(3):
                with pytest.raises(OSError):
                    one.execute("svc", _boom)
            for _ in range(5):
                with pytest.raises(CircuitOpenError):
                    one.execute("svc", _boom)
        changes = [e for e in events if e.kind is EventKind.STATE_CHANGE]
        assert [(e.previous_state, e.state, e.trigger) for e in changes] == [
            (CircuitState.CLOSED, CircuitState.OPEN, "process")
        ]
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        assert "isolated" in warnings[0].getMessage()
        assert two.state("svc").state is CircuitState.CLOSED

    def test_a_forked_child_reports_under_its_own_id(
        self, make_redis_breaker: Callable[..., CircuitBreaker]
    ) -> None:
        """The reporter id is stable in a process and new in a forked child."""
        breaker = make_redis_breaker(max_failures=3)
        store = breaker.backend.store  # type: ignore[attr-defined]
        parent = store.reporter
        assert store.reporter == parent
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: say its id, and leave at once
            os.write(write, store.reporter.encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            child = pipe.read()
        os.waitpid(pid, 0)
        assert child != parent
        assert child.split(":")[1] == str(pid)

    def test_failures_before_the_fleet_opened_never_isolate_later(
        self, make_redis_breaker: Callable[..., CircuitBreaker]
    ) -> None:
        """Once the fleet's circuit opened, earlier failures of this process never isolate it."""
        web, worker = make_redis_breaker(max_failures=3), make_redis_breaker(max_failures=3)
        worker.execute("svc", lambda: None)
        for _ in range(2):
            for _ in range(3):
                with pytest.raises(OSError):
                    web.execute("svc", _boom)
            assert web.state("svc").opened_by == "failures"  # the fleet's circuit, both times
            web.reset("svc")

    def test_the_async_path_isolates_and_recovers_the_same(
        self, make_redis_breaker: Callable[..., CircuitBreaker], clock: ManualClock
    ) -> None:
        """execute_async: isolated after its own threshold, local trial after open_seconds, closed again."""
        one = make_redis_breaker(max_failures=3, min_failing_processes=2, open_seconds=5)
        two = make_redis_breaker(max_failures=3, min_failing_processes=2, open_seconds=5)

        async def boom() -> None:
            raise OSError("down")

        async def main() -> None:
            try:
                await two.execute_async("svc", asyncio.sleep, 0)
                for _ in range(3):
                    with pytest.raises(OSError):
                        await one.execute_async("svc", boom)
                with pytest.raises(CircuitOpenError) as rejected:
                    await one.execute_async("svc", asyncio.sleep, 0)
                assert rejected.value.opened_by == "process"
                assert (await one.astate("svc")).state is CircuitState.OPEN
                clock.advance(5)
                await one.execute_async("svc", asyncio.sleep, 0)  # its trial succeeds
                assert (await one.astate("svc")).state is CircuitState.CLOSED
                assert (await two.astate("svc")).state is CircuitState.CLOSED
            finally:
                await one.aclose()
                await two.aclose()

        asyncio.run(main())

    def test_open_on_opens_at_once_whatever_the_quorum(
        self, make_redis_breaker: Callable[..., CircuitBreaker]
    ) -> None:
        """open_on trips the fleet's circuit at once, even with k=3."""
        breaker = make_redis_breaker(max_failures=3, min_failing_processes=3, open_on=(OSError,))
        with pytest.raises(OSError):
            breaker.execute("svc", _boom)
        assert breaker.state("svc").opened_by == "open_on"

    def test_unreachable_redis_decides_alone_and_says_so_once(self, caplog: pytest.LogCaptureFixture) -> None:
        """While Redis is unreachable a process decides alone, as with k=1, and one INFO line says so."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        breaker = CircuitBreaker(
            "redis",
            redis_url=f"redis://127.0.0.1:{port}/0",
            socket_timeout=0.2,
            warn_interval=0,
            default_policy=ServicePolicy(max_failures=2, min_failing_processes=2),
        )
        try:
            with caplog.at_level(logging.INFO, logger="tnm.circuit"):
                for _ in range(2):
                    with pytest.raises(OSError):
                        breaker.execute("svc", _boom)
                with pytest.raises(CircuitOpenError):
                    breaker.execute("svc", _boom)
        finally:
            breaker.close()
        alone = [r for r in caplog.records if "decides alone" in r.getMessage()]
        assert [r.levelno for r in alone] == [logging.INFO]


class TestIsolationVerdict:
    """``Isolation`` alone (no Redis): this process's own verdict, driven by explicit times."""

    def test_a_trial_never_reported_frees_its_permit_after_the_trial_timeout(self) -> None:
        """A cancelled local trial (no outcome) does not keep the process half-open forever."""
        policy = ServicePolicy(max_failures=2, open_seconds=5, trial_timeout_seconds=10)
        isolation = Isolation(policy, lambda: 0)
        assert isolation.judge(0.0, True, False) is None
        assert isolation.judge(1.0, True, False) == "failures"
        isolation.isolate(1.0)
        assert isolation.acquire(2.0) == (False, False)  # open
        assert isolation.acquire(6.0) == (True, True)  # half-open: the one trial
        assert isolation.acquire(7.0) == (False, False)  # its permit is taken
        assert isolation.acquire(16.0) == (True, False)  # never reported: freed after 10 s
        assert isolation.trial_succeeded()  # and this one closes it
        assert isolation.state is None

    def test_the_rate_counts_this_process_successes(self) -> None:
        """Own rate: 10 failures among 40 own successes stay under 50%; alone they meet it."""
        policy = ServicePolicy(max_failures=None, failure_rate_threshold=0.5, minimum_calls=10)
        successes = 40
        isolation = Isolation(policy, lambda: successes)
        assert [isolation.judge(float(t), True, False) for t in range(10)] == [None] * 10
        successes = 0
        alone = Isolation(policy, lambda: successes)
        assert [alone.judge(float(t), True, False) for t in range(10)][-1] == "failure_rate"

    @given(
        steps=st.lists(
            st.tuples(st.floats(0.0, 4.0), st.booleans(), st.booleans(), st.integers(0, 3)),
            max_size=60,
        )
    )
    def test_the_window_counts_match_a_recount(self, steps: list[tuple[float, bool, bool, int]]) -> None:
        """The failures and slow calls kept as events come and go equal a recount of the window's
        events, and the count trigger keeps only the newest ``max_failures`` failure times."""
        policy = ServicePolicy(
            window_seconds=5,
            max_failures=3,
            failure_rate_threshold=0.9,
            minimum_calls=1000,  # never met: the counts go on
            slow_call_seconds=1,
            slow_call_rate_threshold=0.9,
        )
        successes = 0
        isolation = Isolation(policy, lambda: successes)
        now = 0.0
        for gap, failed, slow, new_successes in steps:
            now += gap
            successes += new_successes
            isolation.judge(now, failed, slow)
            events = list(isolation._events)
            assert (isolation._failed, isolation._slow) == (
                sum(e[2] for e in events),
                sum(e[3] for e in events),
            )
            assert len(isolation.streak) <= 3

    def test_callers_and_the_listener_keep_the_counts_exact(
        self, make_redis_breaker: Callable[..., CircuitBreaker]
    ) -> None:
        """Threads judging their failures while the listener clears the isolation (the fleet's
        circuit opened): under the mirror's lock the kept counts always equal a recount of the
        window's events, and they do at the end."""
        import threading

        breaker = make_redis_breaker(
            window_seconds=1000,
            max_failures=None,
            failure_rate_threshold=0.9,
            minimum_calls=10**9,
            slow_call_seconds=1,
            slow_call_rate_threshold=0.9,
        )
        breaker.state("svc")
        circuit: Any = breaker.circuits()["svc"]
        stop = threading.Event()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)

        def caller() -> None:
            for _ in range(20000):
                circuit.judge_own(True, True)

        seen_inconsistent: list[tuple[int, int]] = []

        def listener() -> None:
            while not stop.is_set():
                with circuit._news_lock:  # as the mirror clears it on a notice
                    isolation = circuit.isolation
                    recount = sum(e[2] for e in isolation._events)
                    if recount != isolation._failed:
                        seen_inconsistent.append((recount, isolation._failed))
                    isolation.clear()

        try:
            clearing = threading.Thread(target=listener)
            callers = [threading.Thread(target=caller) for _ in range(2)]
            clearing.start()
            for thread in callers:
                thread.start()
            for thread in callers:
                thread.join(60)
            stop.set()
            clearing.join(60)
        finally:
            sys.setswitchinterval(switch)
        assert seen_inconsistent == []  # a caller never changes it under the listener's feet
        isolation = circuit.isolation
        events = list(isolation._events)
        assert (isolation._failed, isolation._slow) == (
            sum(e[2] for e in events),
            sum(e[3] for e in events),
        )
