"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit.testing import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_breaker(clock: ManualClock) -> Callable[..., CircuitBreaker]:
    """Build a local breaker on the test's ManualClock; policy fields go to the default policy."""

    def make(service_policies: dict[str, ServicePolicy] | None = None, **policy: Any) -> CircuitBreaker:
        return CircuitBreaker(
            "local",
            default_policy=ServicePolicy(**policy),
            service_policies=service_policies,
            clock=clock,
        )

    return make
