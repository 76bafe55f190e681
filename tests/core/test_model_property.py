"""Property test: the breaker follows a small, obviously-correct reference model.

Hypothesis drives random sequences of failures, successes, slow calls, trial permits,
time steps and manual overrides through a real ``CircuitBreaker`` and through
``Reference`` (which keeps every failure and call time and recomputes everything from
scratch), and requires the same state, count, rates, availability and retry_after
after every step.

Calls go through every public entry point (``protect`` on a sync function, an async
one, a generator and an async generator, ``execute``, ``execute_async`` and ``guard``
with ``with`` and ``async with``): the two ``protect`` wrappers inline the call path and
the others share one body, so the same sequences prove that all of them agree with the
model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy
from tnm.circuit.policies import RATE_BUCKETS
from tnm.circuit.testing import ManualClock


def _raise() -> None:
    raise OSError("down")


class Reference:
    def __init__(self, policy: ServicePolicy) -> None:
        self.p = policy
        self.state = "closed"
        self.failures: list[float] = []
        self.open_until = 0.0
        self.reopenings = 0
        self.permits: dict[int, float] = {}
        self.successes = 0
        self.tokens = 0
        self.calls: list[tuple[float, bool, bool]] = []  # (time, failed, slow), rate triggers only
        self.opened_by: str | None = None
        self.frozen: tuple[Any, ...] | None = None  # the figures that opened it, kept until it closes

    def figures(self, now: float) -> tuple[Any, ...]:
        """(failures, calls, failure_rate, slow_call_rate) as state() must report them."""
        if self.frozen is not None:
            return self.frozen
        failures = self.in_window(now) if self.p.max_failures is not None else 0
        calls = failure_rate = slow_rate = None
        if self.p.counts_calls:
            calls, failed, slow = self.window(now) if self.state != "disabled" else (0, 0, 0)
            failure_rate = failed / calls if calls else 0.0
            if self.p.slow_call_rate_threshold is not None:
                slow_rate = slow / calls if calls else 0.0
            if self.p.max_failures is None:
                failures = failed
        return failures, calls, failure_rate, slow_rate

    def window(self, now: float) -> tuple[int, int, int]:
        """Calls, failures and slow calls in the newest RATE_BUCKETS buckets of bucket_ms."""
        current = round(now * 1000) // self.p.bucket_ms
        live = [c for c in self.calls if round(c[0] * 1000) // self.p.bucket_ms > current - RATE_BUCKETS]
        return len(live), sum(c[1] for c in live), sum(c[2] for c in live)

    def _count_call(self, now: float, failed: bool, slow: bool) -> None:
        if not self.p.counts_calls or self.state != "closed":
            return
        self.calls.append((now, failed, slow))
        if not (failed or slow):
            return  # a success never opens a circuit: the rates are checked at failures and slow calls
        calls, failures, slows = self.window(now)
        frt, srt = self.p.failure_rate_threshold, self.p.slow_call_rate_threshold
        if calls >= self.p.minimum_calls:
            if frt is not None and failures >= frt * calls:
                self._open(now, "failure_rate")
            elif srt is not None and slows >= srt * calls:
                self._open(now, "slow_call_rate")

    def tick(self, now: float) -> None:
        if self.state == "open" and now >= self.open_until:
            self.state, self.successes = "half_open", 0
        if self.state == "half_open":
            self.permits = {t: d for t, d in self.permits.items() if d > now}

    def _open(self, now: float, trigger: str) -> None:
        if self.frozen is None:
            self.frozen = self.figures(now)
        self.opened_by = trigger
        duration = self.p.open_seconds * self.p.backoff_multiplier**self.reopenings  # type: ignore[operator]
        self.open_until = now + min(duration, self.p.max_open_seconds)  # type: ignore[type-var]
        self.state, self.permits, self.successes, self.calls = "open", {}, 0, []

    def in_window(self, now: float) -> int:
        return len([t for t in self.failures if t > now - self.p.window_seconds])

    def acquire(self, now: float) -> int:
        self.tick(now)
        if self.state in ("closed", "disabled"):
            return 0
        if self.state == "half_open" and len(self.permits) < self.p.half_open_max_calls:
            self.tokens += 1
            self.permits[self.tokens] = now + self.p.trial_timeout_seconds
            return self.tokens
        return -1

    def failure(self, now: float, token: int, slow: bool = False) -> None:
        self.tick(now)
        if self.state == "disabled":
            return
        self.permits.pop(token, None)
        if self.state == "closed":
            if self.p.max_failures is not None:
                self.failures.append(now)
                if self.in_window(now) >= self.p.max_failures:
                    self._open(now, "failures")
            self._count_call(now, True, slow)
        elif self.state == "half_open":
            self.reopenings += 1
            self._open(now, "trial_failed")

    def success(self, now: float, token: int) -> None:
        self.tick(now)
        self.permits.pop(token, None)
        if self.state == "closed":
            self.failures = []
            self._count_call(now, False, False)
        elif self.state == "half_open":
            self.successes += 1
            if self.successes >= self.p.success_threshold:
                self.reset()

    def slow_success(self, now: float, token: int) -> None:
        self.tick(now)
        self.permits.pop(token, None)
        if self.state == "closed":
            self.failures = []
            self._count_call(now, False, True)
        elif self.state == "half_open":
            self.reopenings += 1
            self._open(now, "trial_failed")

    def reset(self) -> None:
        self.state, self.failures, self.permits, self.successes, self.reopenings = "closed", [], {}, 0, 0
        self.calls, self.opened_by, self.frozen = [], None, None

    def force_open(self, now: float) -> None:
        if self.frozen is None:
            self.frozen = self.figures(now)
        self.state, self.permits, self.calls, self.opened_by = "forced_open", {}, [], "operator"

    def available(self, now: float) -> bool:
        self.tick(now)
        if self.state in ("closed", "disabled"):
            return True
        return self.state == "half_open" and len(self.permits) < self.p.half_open_max_calls

    def retry_after(self, now: float) -> float | None:
        self.tick(now)
        if self.state == "forced_open":
            return None
        if self.state == "open":
            return self.open_until - now
        if self.state == "half_open" and len(self.permits) >= self.p.half_open_max_calls:
            return min(self.permits.values()) - now
        return 0.0


@st.composite
def policies(draw: st.DrawFn) -> ServicePolicy:
    """Count-only policies as before, and policies with rate triggers (the count one on or off)."""
    failure_rate = draw(st.sampled_from([None, None, 0.5, 1.0]))
    slow_rate = draw(st.sampled_from([None, 0.3, 0.5]))
    max_failures = draw(st.integers(1, 4))
    if failure_rate is not None or slow_rate is not None:
        max_failures = draw(st.sampled_from([None, max_failures]))
    return ServicePolicy(
        window_seconds=draw(st.sampled_from([1.0, 5.0, 10.0])),
        max_failures=max_failures,
        open_seconds=draw(st.sampled_from([0.0, 1.0, 3.0])),
        half_open_max_calls=draw(st.integers(1, 3)),
        success_threshold=draw(st.integers(1, 3)),
        backoff_multiplier=draw(st.sampled_from([1.0, 2.0])),
        max_open_seconds=10.0,
        trial_timeout_seconds=draw(st.sampled_from([2.0, 5.0])),
        failure_rate_threshold=failure_rate,
        minimum_calls=draw(st.integers(1, 4)),
        slow_call_seconds=1.0,
        slow_call_rate_threshold=slow_rate,
    )


class BreakerMatchesReference(RuleBasedStateMachine):
    @initialize(policy=policies())
    def setup(self, policy: ServicePolicy) -> None:
        self.clock = ManualClock()
        self.breaker = CircuitBreaker(clock=self.clock, default_policy=policy)
        self.breaker.state("svc")  # makes the circuit, so that circuits() has its handle
        self.circuit: Any = self.breaker.circuits()["svc"]
        self.ref = Reference(policy)
        self.trials: list[tuple[int, int]] = []  # (real token, reference token)
        self.loop = asyncio.new_event_loop()

        def body(ok: bool) -> str:
            if not ok:
                raise ConnectionError("down")
            return "ok"

        async def abody(ok: bool) -> str:
            return body(ok)

        def gen_body(ok: bool) -> Iterator[str]:
            yield body(ok)

        async def agen_body(ok: bool) -> AsyncIterator[str]:
            yield body(ok)

        def guarded(ok: bool) -> str:
            with self.breaker.guard("svc"):
                return body(ok)

        async def aguarded(ok: bool) -> str:
            async with self.breaker.guard("svc"):
                return body(ok)

        async def drain(agen: AsyncIterator[str]) -> str:
            return "".join([item async for item in agen])

        self.paths: dict[str, Any] = {
            "protect sync": self.breaker.protect("svc")(body),
            "protect async": lambda ok: self.loop.run_until_complete(self.breaker.protect("svc")(abody)(ok)),
            "execute": lambda ok: self.breaker.execute("svc", body, ok),
            "execute_async": lambda ok: self.loop.run_until_complete(
                self.breaker.execute_async("svc", abody, ok)
            ),
            "guard": guarded,
            "async guard": lambda ok: self.loop.run_until_complete(aguarded(ok)),
            "protect generator": lambda ok: "".join(self.breaker.protect("svc")(gen_body)(ok)),
            "protect async generator": lambda ok: self.loop.run_until_complete(
                drain(self.breaker.protect("svc")(agen_body)(ok))
            ),
        }

    def teardown(self) -> None:
        if hasattr(self, "loop"):
            self.loop.close()

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    @rule(step=st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0]))
    def advance(self, step: float) -> None:
        self.clock.advance(step)

    @rule()
    def failure(self) -> None:
        self.breaker.record_failure("svc", "f")
        self.ref.failure(self.now, 0)

    @rule()
    def success(self) -> None:
        self.breaker.record_success("svc")
        self.ref.success(self.now, 0)

    @rule()
    def failing_call(self) -> None:
        """A failure through the call path (the closure that counts it without the lock)."""
        try:
            self.breaker.execute("svc", _raise)
        except (OSError, CircuitOpenError):
            pass
        else:  # pragma: no cover - _raise always raises
            raise AssertionError
        token = self.ref.acquire(self.now)
        if token >= 0:
            self.ref.failure(self.now, token)

    @rule()
    def slow_success(self) -> None:
        self.circuit.on_slow_success(0)
        self.ref.slow_success(self.now, 0)

    @rule()
    def slow_failure(self) -> None:
        self.circuit.on_failure(0, "slow", True)
        self.ref.failure(self.now, 0, slow=True)

    @rule(step=st.sampled_from([0.05, 0.1, 0.3]))
    def small_step(self, step: float) -> None:
        self.clock.advance(step)

    @rule()
    def acquire(self) -> None:
        real = self.circuit.acquire()
        expected = self.ref.acquire(self.now)
        assert (real > 0, real == 0) == (expected > 0, expected == 0)
        if real > 0:
            self.trials.append((real, expected))

    @rule(
        path=st.sampled_from(
            [
                "protect sync",
                "protect async",
                "execute",
                "execute_async",
                "guard",
                "async guard",
                "protect generator",
                "protect async generator",
            ]
        ),
        ok=st.booleans(),
    )
    def call(self, path: str, ok: bool) -> None:
        expected = self.ref.acquire(self.now)
        if expected < 0:
            with pytest.raises(CircuitOpenError):
                self.paths[path](ok)
            return
        if ok:
            assert self.paths[path](ok) == "ok"
            self.ref.success(self.now, expected)
        else:
            with pytest.raises(ConnectionError):
                self.paths[path](ok)
            self.ref.failure(self.now, expected)

    @precondition(lambda self: self.trials)
    @rule(ok=st.sampled_from(["ok", "slow", "failed"]), which=st.integers(0, 10))
    def finish_trial(self, ok: str, which: int) -> None:
        real, expected = self.trials.pop(which % len(self.trials))
        if ok == "ok":
            self.circuit.on_success(real)
            self.ref.success(self.now, expected)
        elif ok == "slow":
            self.circuit.on_slow_success(real)
            self.ref.slow_success(self.now, expected)
        else:
            self.circuit.on_failure(real, "trial failed")
            self.ref.failure(self.now, expected)

    @precondition(lambda self: self.trials)
    @rule(which=st.integers(0, 10))
    def abandon_trial(self, which: int) -> None:
        real, expected = self.trials.pop(which % len(self.trials))
        self.circuit.on_release(real)
        self.ref.permits.pop(expected, None)

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open("svc", "ops")
        self.ref.force_open(self.now)

    @rule()
    def disable(self) -> None:
        self.breaker.disable("svc", "ops")
        self.ref.reset()
        self.ref.state = "disabled"

    @rule()
    def reset(self) -> None:
        self.breaker.reset("svc")
        self.ref.reset()

    @invariant()
    def same_view(self) -> None:
        if not hasattr(self, "ref"):
            return
        now = self.now
        assert self.breaker.is_available("svc") == self.ref.available(now)
        snap = self.breaker.state("svc")
        assert snap.state.value == self.ref.state
        assert snap.opened_by == self.ref.opened_by
        assert (snap.failures, snap.calls, snap.failure_rate, snap.slow_call_rate) == self.ref.figures(now)
        if self.ref.state in ("open", "half_open", "forced_open"):
            error = self.breaker.open_error("svc")
            assert isinstance(error, CircuitOpenError)
            assert (error.failures, error.opened_by) == (snap.failures, snap.opened_by)
        assert snap.retry_after == self.ref.retry_after(now)


TestBreakerMatchesReference = BreakerMatchesReference.TestCase
TestBreakerMatchesReference.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
