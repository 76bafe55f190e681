"""Helpers for testing *your* code under an open or half-open circuit.

No Redis and no sleeping: build the breaker with a ``ManualClock`` and move time::

    clock = ManualClock()
    breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=3))
    trip(breaker, "payments")             # now open: calls raise CircuitOpenError
    clock.advance(breaker.state("payments").retry_after)   # now a trial may run
    with capture_events(breaker) as events:
        ...

``fake_redis_breaker`` builds a breaker on the Redis backend, running its real Lua
script on an in-process fakeredis server (``pip install 'tnm-circuit-core[testing]'``):
breakers given the same ``server`` share state as processes sharing one Redis do.
With pytest, the fixtures ``circuit_clock``, ``make_breaker`` and ``circuit_events``
are there without an import (see the guide).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._validate import bounded_reason
from .breaker import CircuitBreaker
from .events import CircuitEvent
from .exceptions import InvalidConfigTypeError
from .state import CircuitSnapshot, CircuitState

if TYPE_CHECKING:
    from fakeredis import FakeServer

__all__ = ["ManualClock", "capture_events", "fake_redis_breaker", "half_open", "mirror_state", "trip"]


class ManualClock:
    """A clock that only moves when told to. Safe to share between threads."""

    def __init__(self, monotonic: float = 1_000.0, time: float = 1_700_000_000.0) -> None:
        self._monotonic = float(monotonic)
        self._time = float(time)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ManualClock(monotonic={self._monotonic!r}, time={self._time!r})"

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._time

    def advance(self, seconds: float | None) -> None:
        """Move both clocks forward by ``seconds`` (``None`` counts as 0, as a retry_after may be)."""
        step = float(seconds or 0.0)
        if step < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._monotonic += step
            self._time += step


def trip(breaker: CircuitBreaker, service: str, reason: str = "tripped by a test") -> CircuitSnapshot:
    """Open ``service``'s circuit the way real failures would: its policy's count, or enough
    failures for its failure-rate trigger, or enough slow failures for its slow-call trigger."""
    policy = breaker.policy_for(service)
    slow = policy.max_failures is None and policy.failure_rate_threshold is None
    circuit = breaker._circuit(service)
    for _ in range(policy.max_failures or policy.minimum_calls):
        circuit.on_failure(0, bounded_reason(reason), slow)
    return breaker.state(service)


def half_open(breaker: CircuitBreaker, service: str) -> CircuitSnapshot:
    """Trip ``service``'s circuit and move the breaker's ``ManualClock`` past its open time."""
    clock = breaker.clock
    if not isinstance(clock, ManualClock):
        raise InvalidConfigTypeError("clock", "half_open() needs a breaker built with clock=ManualClock()")
    snapshot = breaker.state(service)
    if snapshot.state is not CircuitState.OPEN:
        snapshot = trip(breaker, service)
    clock.advance(snapshot.retry_after)
    return breaker.state(service)


@contextmanager
def capture_events(breaker: CircuitBreaker) -> Iterator[list[CircuitEvent]]:
    """Collect every ``CircuitEvent`` the breaker emits inside the ``with`` block."""
    events: list[CircuitEvent] = []
    breaker.add_listener(events.append)
    try:
        yield events
    finally:
        breaker.remove_listener(events.append)


def mirror_state(breaker: CircuitBreaker, service: str) -> CircuitState:
    """The state this process's call path reads for ``service`` right now, asking no store.

    For the local backend it is the circuit's state; for a shared backend it is this
    process's mirror of the shared state (what decides the next call without a round
    trip), which the background threads keep fresh. ``breaker.state()`` asks the store
    instead. Raises ``LookupError`` if this process has not used ``service`` yet.
    """
    handle = breaker.circuits().get(service)
    if handle is None:
        raise LookupError(f"this process has no circuit for {service!r} yet: make a call through it first")
    return handle.state


def fake_redis_breaker(*, server: FakeServer | None = None, **kwargs: Any) -> CircuitBreaker:
    """An initialized ``CircuitBreaker`` on the Redis backend, on an in-process fake Redis.

    The backend and its Lua script run unchanged on a ``fakeredis.FakeServer``: a new
    one, or ``server`` to share it with other breakers (each then plays one process).
    Other arguments are those of ``CircuitBreaker`` (``clock``, ``default_policy``,
    ``namespace``…), without ``backend``, ``redis_url`` or clients. Close it when done
    (``close()``, or use it in a ``with`` block).

    A call that changes the shared state returns once every other breaker on the same
    server has heard of it, so a test asserts right away, without waiting. Needs
    ``pip install 'tnm-circuit-core[testing]'``; fakeredis is imported on the first call.
    """
    from ._fake_redis import fake_redis_breaker as build

    return build(server=server, **kwargs)
