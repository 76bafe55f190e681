"""``tnm.circuit.testing.mirror_state``: what this process's call path reads, without I/O."""

from __future__ import annotations

import pytest

from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy
from tnm.circuit.testing import mirror_state, trip


class TestMirrorState:
    def test_follows_the_circuit(self) -> None:
        """The mirror reads closed, then open once the circuit tripped, then closed after a reset."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=2))
        breaker.execute("svc", lambda: None)
        assert mirror_state(breaker, "svc") is CircuitState.CLOSED
        trip(breaker, "svc")
        assert mirror_state(breaker, "svc") is CircuitState.OPEN
        breaker.reset("svc")
        assert mirror_state(breaker, "svc") is CircuitState.CLOSED

    def test_unknown_service_is_a_lookup_error(self) -> None:
        """A service this process never used has no mirror: LookupError, naming the service."""
        with pytest.raises(LookupError, match="never-used"):
            mirror_state(CircuitBreaker(), "never-used")
