"""The storage seam: what the breaker asks of a backend.

A backend hands out one ``CircuitHandle`` per service. The breaker's hot path reads
only two plain attributes of a handle, ``state`` and ``dirty``; for the local backend
they are the truth, for a shared store they are a local mirror kept fresh in the
background. Everything else (a failure, a trial permit, a manual override) goes
through the handle's methods, which may do I/O; the ``a``-prefixed twins are used
on async paths so that I/O never blocks an event loop.

The methods on the call path (``acquire``, the ``on_*`` methods and their async
twins) and the reads (``is_available``, ``snapshot``, ``last_failure``) never raise
because storage failed: a backend that loses its store falls back on per-process
state (or rejects, if configured to fail closed). ``force_open`` and ``reset`` are
different: an operator's override that was not stored must not look done, so they
raise ``CircuitBackendError`` when the store could not take the change.
"""

from __future__ import annotations

from typing import Any, Protocol

from .._counter import AtomicCounter
from ..clock import Clock
from ..events import ListenerList
from ..exceptions import CircuitError
from ..policies import ServicePolicy
from ..state import CircuitSnapshot, CircuitState

__all__ = ["Backend", "CircuitHandle"]


class CircuitHandle(Protocol):
    service: str
    policy: ServicePolicy
    state: CircuitState
    """Current state as last known in this process (read without a lock)."""
    dirty: bool
    """True while closed with failures recorded, so that a success must reset them."""
    io_free: bool
    """True if no method does I/O, so async callers may call the sync ones (no coroutine)."""
    successes: AtomicCounter
    """Successful calls counted while a listener is registered (metrics read it)."""

    def acquire(self) -> int:
        """``0``: let the call through; ``-1``: reject; ``> 0``: a trial permit token."""
        ...

    def on_success(self, token: int) -> None: ...
    def on_failure(self, token: int, reason: str) -> None: ...
    def on_ignored(self, token: int) -> None: ...
    def on_release(self, token: int) -> None:
        """Give back a permit whose call ended without an outcome (e.g. cancelled).

        Never blocks: it is also called from a cancelled coroutine.
        """
        ...

    def on_rejected(self, fallback: bool) -> None:
        """Tell listeners that a call was rejected (and whether a fallback served it)."""
        ...

    async def aacquire(self) -> int: ...
    async def aon_success(self, token: int) -> None: ...
    async def aon_failure(self, token: int, reason: str) -> None: ...
    async def aon_ignored(self, token: int) -> None: ...

    def is_available(self) -> bool: ...
    async def ais_available(self) -> bool: ...
    def snapshot(self) -> CircuitSnapshot: ...
    async def asnapshot(self) -> CircuitSnapshot: ...
    def open_error(self) -> CircuitError:
        """The error a rejected call raises (``CircuitOpenError``, or ``CircuitBackendError``
        when a shared store is down and the breaker is told to say so)."""
        ...

    def last_failure(self) -> dict[str, Any] | None: ...
    def force_open(self, reason: str) -> None:
        """Hold the circuit open; ``CircuitBackendError`` if the store could not take it."""
        ...

    def reset(self) -> None:
        """Close the circuit; ``CircuitBackendError`` if the store could not take it."""
        ...


class Backend(Protocol):
    name: str

    def circuit(
        self, service: str, policy: ServicePolicy, clock: Clock, listeners: ListenerList
    ) -> CircuitHandle:
        """Return the handle for ``service``, creating it on first use."""
        ...

    def services(self) -> list[str]:
        """Names of the services this backend knows a circuit for."""
        ...

    # Optional: ``forget(service, circuit)`` drops an idle circuit (closed, no failures)
    # so that memory follows the services in use; the breaker calls it when present.

    def initialize(self) -> None: ...
    def close(self) -> None: ...
    async def ainitialize(self) -> None: ...
    async def aclose(self) -> None: ...
