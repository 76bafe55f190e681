"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit.testing import ManualClock

from .redis_server import RedisServer


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_breaker(clock: ManualClock) -> Callable[..., CircuitBreaker]:
    """Build a local breaker on the test's ManualClock; policy fields go to the default policy.

    It shadows the make_breaker fixture of the tnm_circuit pytest plugin (tests/testing
    proves that one), so this repo's tests keep their shorter, policy-only form.
    """

    def make(service_policies: dict[str, ServicePolicy] | None = None, **policy: Any) -> CircuitBreaker:
        return CircuitBreaker(
            "local",
            default_policy=ServicePolicy(**policy),
            service_policies=service_policies,
            clock=clock,
        )

    return make


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's private redis-server (started once, on a free loopback port)."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean database on the session's server, which the test may not leave stopped."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.client().flushall()
    yield redis_server.url
    if redis_server.process is None:
        redis_server.start()


@pytest.fixture
def make_redis_breaker(redis_url: str, clock: ManualClock) -> Iterator[Callable[..., CircuitBreaker]]:
    """Build Redis breakers on the test's ManualClock; all are closed after the test."""
    made: list[CircuitBreaker] = []

    def make(
        service_policies: dict[str, ServicePolicy] | None = None,
        *,
        use_clock: bool = True,
        initialize: bool = True,
        backend_options: dict[str, Any] | None = None,
        **policy: Any,
    ) -> CircuitBreaker:
        breaker = CircuitBreaker(
            "redis",
            default_policy=ServicePolicy(**policy),
            service_policies=service_policies,
            clock=clock if use_clock else None,
            redis_url=redis_url,
            namespace="test:circuit",
            **(backend_options or {}),
        )
        if initialize:
            breaker.initialize()
        made.append(breaker)
        return breaker

    yield make
    for breaker in made:
        breaker.close()
