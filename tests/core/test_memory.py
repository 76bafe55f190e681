"""Memory follows the services in use: circuits idle for a whole meta_ttl_seconds are dropped."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock


class TestIdleCircuits:
    def test_many_services_used_once_give_their_memory_back(self, clock: ManualClock) -> None:
        """20,000 services called once, then idle: their circuits and memory go; busy ones stay."""
        breaker = CircuitBreaker(
            clock=clock, meta_ttl_seconds=60, default_policy=ServicePolicy(open_seconds=3600)
        )
        pinned = breaker.protect("pinned")(lambda: 1)
        for _ in range(5):
            breaker.record_failure("failing", "down")  # open: never dropped
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for n in range(20_000):
                breaker.execute(f"svc-{n}", lambda: 1)
            grown = tracemalloc.get_traced_memory()[0] - base
            for step in range(2):  # idle for more than a whole meta_ttl_seconds
                clock.advance(61)
                breaker.execute(f"new-{step}", lambda: 1)
            gc.collect()  # circuits hold reference cycles (a model and its failure recorder)
            left = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        print(f"20,000 circuits: +{grown / 1024:.0f} KiB, after two idle periods: +{left / 1024:.0f} KiB")
        assert left < grown * 0.1, (grown, left)
        assert set(breaker.circuits()) <= {"pinned", "failing", "new-0", "new-1"}
        assert len(breaker.backend.services()) <= 4
        assert breaker.state("failing").state is CircuitState.OPEN
        assert pinned() == 1

    def test_a_dropped_circuit_comes_back_as_it_was(self, clock: ManualClock) -> None:
        """A service used again after being dropped gets a closed circuit that counts afresh."""
        breaker = CircuitBreaker(clock=clock, meta_ttl_seconds=60)
        breaker.execute("svc", lambda: 1)
        for step in range(2):
            clock.advance(61)
            breaker.execute(f"other-{step}", lambda: 1)
        assert "svc" not in breaker.circuits()
        for _ in range(5):
            breaker.record_failure("svc", "down")
        with pytest.raises(CircuitOpenError):
            breaker.execute("svc", lambda: 1)


def bytes_per_circuit(policy: ServicePolicy, count: int = 2000) -> float:
    """Memory each circuit called once holds, everything the breaker keeps for it included."""
    breaker = CircuitBreaker(default_policy=policy)
    for n in range(50):  # whatever the first circuits load or compile once is not counted
        breaker.execute(f"warm-up-{n}", lambda: 1)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for n in range(count):
            breaker.execute(f"svc-{n:05d}", lambda: 1)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(breaker.circuits()) == count + 50
    return grown / count


class TestCircuitSize:
    def test_an_idle_circuit_under_a_count_policy_takes_under_1_kib(self) -> None:
        """A circuit called once under a count policy holds less than 1 KiB (no failure times,
        counters or rate window until they are used)."""
        size = bytes_per_circuit(ServicePolicy())
        print(f"count policy: {size:.0f} B per idle circuit")
        assert size < 1024

    def test_an_idle_circuit_under_a_rate_policy_takes_under_2_kib(self) -> None:
        """A circuit called once under a failure-rate policy holds less than 2 KiB (buckets
        are allocated when first settled)."""
        policy = ServicePolicy(max_failures=None, failure_rate_threshold=0.5)
        size = bytes_per_circuit(policy)
        print(f"rate policy: {size:.0f} B per idle circuit")
        assert size < 2048
