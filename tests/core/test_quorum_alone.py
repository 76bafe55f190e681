"""One process cannot form a quorum: the local backend decides alone, as with min_failing_processes=1."""

from __future__ import annotations

import logging

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy


def _boom() -> None:
    raise OSError("down")


class TestLocalBackendDecidesAlone:
    def test_a_quorum_policy_opens_as_with_k_1_and_says_so_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """min_failing_processes=3 on the local backend opens on the trigger alone; one INFO line says so."""
        policy = ServicePolicy(max_failures=2, min_failing_processes=3)
        breaker = CircuitBreaker(default_policy=policy)
        with caplog.at_level(logging.INFO, logger="tnm.circuit"):
            for service in ("a", "b"):
                for _ in range(2):
                    with pytest.raises(OSError):
                        breaker.execute(service, _boom)
                with pytest.raises(CircuitOpenError):
                    breaker.execute(service, _boom)
        alone = [r for r in caplog.records if "decides alone" in r.getMessage()]
        assert [r.levelno for r in alone] == [logging.INFO]
        assert breaker.state("a").failing_processes is None

    def test_the_default_says_nothing(self, caplog: pytest.LogCaptureFixture) -> None:
        """Without a quorum there is nothing to say."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=2))
        with caplog.at_level(logging.INFO, logger="tnm.circuit"), pytest.raises(OSError):
            breaker.execute("a", _boom)
        assert not [r for r in caplog.records if "decides alone" in r.getMessage()]
