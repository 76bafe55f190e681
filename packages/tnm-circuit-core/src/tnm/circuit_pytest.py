"""The pytest plugin of tnm-circuit-core: fixtures for testing your code with a breaker.

pytest loads it through the ``pytest11`` entry point when tnm-circuit-core is installed
(disable it with ``-p no:tnm_circuit``). Loading it imports pytest only: ``tnm.circuit``
is imported when a test asks for one of its fixtures, and fakeredis only when a test
asks for ``make_breaker(shared=True)``.

* ``circuit_clock``: a ``ManualClock``; time moves only when the test says so.
* ``make_breaker(*args, shared=False, **kwargs)``: builds a ``CircuitBreaker`` with the
  arguments of ``CircuitBreaker``, on ``circuit_clock``, initialized, closed after the
  test. ``shared=True`` builds it on the Redis backend with an in-process fake Redis
  that every ``shared=True`` breaker of the test shares: each plays one process.
* ``circuit_events``: every ``CircuitEvent`` of every breaker ``make_breaker`` built in
  the test, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fakeredis import FakeServer

    from tnm.circuit import CircuitBreaker, CircuitEvent
    from tnm.circuit.testing import ManualClock

__all__ = ["circuit_clock", "circuit_events", "make_breaker"]


@pytest.fixture
def circuit_clock() -> ManualClock:
    """A ``ManualClock`` for this test: breakers from ``make_breaker`` run on it."""
    from tnm.circuit.testing import ManualClock

    return ManualClock()


@pytest.fixture
def circuit_events() -> list[CircuitEvent]:
    """Every event of every breaker ``make_breaker`` built in this test, in order."""
    return []


@pytest.fixture
def make_breaker(
    circuit_clock: ManualClock, circuit_events: list[CircuitEvent]
) -> Iterator[Callable[..., CircuitBreaker]]:
    """Build initialized breakers on ``circuit_clock``; ``shared=True`` ones share one fake Redis."""
    made: list[CircuitBreaker] = []
    server: FakeServer | None = None

    def make(*args: Any, shared: bool = False, **kwargs: Any) -> CircuitBreaker:
        nonlocal server
        from tnm.circuit import CircuitBreaker

        kwargs.setdefault("clock", circuit_clock)
        if shared:
            from tnm.circuit.exceptions import InvalidConfigError

            if args:
                raise InvalidConfigError(
                    "backend", "make_breaker(shared=True) builds the redis backend itself; leave it out"
                )
            from tnm.circuit._fake_redis import fake_redis_breaker, new_server

            if server is None:
                server = new_server()
            breaker = fake_redis_breaker(server=server, **kwargs)
            breaker.add_listener(circuit_events.append)
        else:
            breaker = CircuitBreaker(*args, **kwargs)
            breaker.add_listener(circuit_events.append)
            breaker.initialize()
        made.append(breaker)
        return breaker

    yield make
    for breaker in reversed(made):
        breaker.close()
