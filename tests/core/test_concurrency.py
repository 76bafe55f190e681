"""Exactness under threads: thresholds and half-open permits lose no update."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, EventKind, ServicePolicy
from tnm.circuit.testing import ManualClock, capture_events

THREADS = 8


@pytest.fixture(autouse=True)
def _frequent_thread_switches() -> Iterator[None]:
    """Switch threads as often as possible so races show up."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _run_threads(target: object, count: int = THREADS) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()


class TestExactThreshold:
    @pytest.mark.parametrize(("recorded", "opens"), [(399, False), (400, True)])
    def test_concurrent_failures_open_at_exactly_the_threshold(self, recorded: int, opens: bool) -> None:
        """399 failures from 8 threads keep a 400-threshold circuit closed; 400 open it, once."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(window_seconds=3600, max_failures=400))
        per_thread, extra = divmod(recorded, THREADS)
        counter = iter(range(THREADS))
        barrier = threading.Barrier(THREADS)

        def worker() -> None:
            n = per_thread + (1 if next(counter) < extra else 0)
            barrier.wait(timeout=10)
            for _ in range(n):
                breaker.record_failure("svc", "x")

        with capture_events(breaker) as events:
            _run_threads(worker)
        snap = breaker.state("svc")
        assert (snap.state is CircuitState.OPEN) is opens
        assert snap.failures == recorded
        assert sum(e.kind is EventKind.STATE_CHANGE for e in events) == (1 if opens else 0)

    def test_protected_calls_stop_after_opening(self) -> None:
        """Concurrent failing calls: bodies stop running once the circuit opens."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(window_seconds=3600, max_failures=50))
        ran = 0
        lock = threading.Lock()

        @breaker.protect("svc")
        def failing() -> None:
            nonlocal ran
            with lock:
                ran += 1
            raise ConnectionError

        def worker() -> None:
            for _ in range(100):
                with contextlib.suppress(ConnectionError, CircuitOpenError):
                    failing()

        _run_threads(worker)
        # At most one call per thread can be in flight when the 50th failure opens it.
        assert 50 <= ran <= 50 + THREADS - 1
        assert breaker.state("svc").state is CircuitState.OPEN


class TestExactPermits:
    def test_half_open_admits_exactly_max_calls(self) -> None:
        """16 threads racing in half-open: exactly half_open_max_calls bodies run at once."""
        clock = ManualClock()
        breaker = CircuitBreaker(
            clock=clock,
            default_policy=ServicePolicy(max_failures=1, open_seconds=1, half_open_max_calls=3),
        )
        breaker.record_failure("svc", "x")
        clock.advance(1)
        start = threading.Barrier(16)
        release = threading.Event()
        running = 0
        peak = 0
        rejected = 0
        lock = threading.Lock()

        @breaker.protect("svc")
        def trial() -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            release.wait(timeout=10)
            with lock:
                running -= 1

        def worker() -> None:
            nonlocal rejected
            start.wait(timeout=10)
            try:
                trial()
            except CircuitOpenError:
                with lock:
                    rejected += 1

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        # Every thread either got a permit (and blocks) or was rejected.
        for _ in range(2000):
            with lock:
                if rejected + running == 16:
                    break
            threading.Event().wait(0.005)
        with lock:
            assert (running, rejected) == (3, 13)
        release.set()
        for t in threads:
            t.join(timeout=10)
        assert peak == 3
        assert breaker.state("svc").state is CircuitState.CLOSED
