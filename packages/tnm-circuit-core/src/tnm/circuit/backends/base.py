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

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..clock import Clock
from ..events import ListenerList
from ..exceptions import CircuitError
from ..policies import ServicePolicy
from ..state import CircuitSnapshot, CircuitState

__all__ = ["Backend", "CircuitHandle", "Counter", "OutcomeCounts", "RateWindow"]

_logger = logging.getLogger("tnm.circuit")


def log_record_error(service: str) -> None:
    """Log (with its traceback) what went wrong inside the breaker while it recorded an outcome
    of ``service``: the caller still gets its own result or exception, even when the app's
    logging raises in turn (a filter of its own, say: nothing is left to tell)."""
    with contextlib.suppress(Exception):
        _logger.exception("tnm-circuit could not record an outcome for %r", service)


class Counter(Protocol):
    """A count that threads bump without a lock and without losing an update."""

    @property
    def increment(self) -> Callable[[], int]:
        """Add one (called on the call path: keep it one C call)."""
        ...

    @property
    def ticks(self) -> Iterator[int]:
        """The count itself: ``next(ticks)`` adds one, a little cheaper than ``increment()``
        (the wrappers use it)."""
        ...

    @property
    def value(self) -> int:
        """How many increments happened so far."""
        ...


class OutcomeCounts(Protocol):
    """One circuit's outcome counters, bumped only while a listener is registered (metrics
    read them instead of getting an event per call)."""

    @property
    def success(self) -> Counter: ...
    @property
    def failure(self) -> Counter: ...
    @property
    def ignored(self) -> Counter: ...
    @property
    def rejected(self) -> Counter:
        """Rejected calls that raised (no fallback)."""
        ...

    @property
    def fallback(self) -> Counter:
        """Rejected calls that a fallback served."""
        ...

    @property
    def would_reject(self) -> Counter:
        """Calls that observe mode let through though the circuit would have rejected them."""
        ...

    @property
    def disabled(self) -> Counter:
        """Calls through a disabled circuit, whatever their outcome (they are not recorded)."""
        ...

    def value_of(self, outcome: str) -> int:
        """The count of ``outcome`` (one of the names above), read without making its counter."""
        ...


class RateWindow(Protocol):
    """The rate window a fast success may be counted into by the call path itself."""

    @property
    def bucket_end(self) -> float:
        """Monotonic time at which the current bucket ends (then ``roll_window()`` first)."""
        ...

    @property
    def ok_counter(self) -> Iterator[int]:
        """``next()`` on it counts one success in the current bucket (on the call path: one
        C call)."""
        ...


class CircuitHandle(Protocol):
    """One service's circuit, as a backend hands it to the breaker (``Backend.circuit``)."""

    service: str
    policy: ServicePolicy
    state: CircuitState
    """Current state as last known in this process (read without a lock)."""
    dirty: bool
    """True while closed with failures recorded, so that a success must reset them."""
    io_free: bool
    """True if no method does I/O, so async callers may call the sync ones (no coroutine)."""
    open_until: float
    """Monotonic time (``monotonic``'s clock) before which every call is rejected, as known
    in this process (0.0 when none): the call path rejects without calling ``acquire``."""
    observe: bool
    """The policy's ``mode`` is ``"observe"``: a call the circuit would reject runs anyway."""
    slow_after: float | None
    """The policy's ``slow_call_seconds``: calls are timed only when it is set."""

    @property
    def successes(self) -> Counter:
        """Successful calls counted while a listener is registered (metrics read it)."""
        ...

    @property
    def counts(self) -> OutcomeCounts:
        """Every outcome counted while a listener is registered (metrics read them, no event)."""
        ...

    @property
    def tally(self) -> Callable[[], None] | None:
        """Set when a rate trigger needs every success counted: the call path calls it for a
        fast success while closed that has nothing else to record. Never does I/O."""
        ...

    @property
    def monotonic(self) -> Callable[[], float]:
        """The clock slow calls are timed with."""
        ...

    @property
    def window(self) -> RateWindow | None:
        """The rate window ``tally`` counts into, when the call path may count a fast
        success itself (``next(ok_counter)``, after ``roll_window()`` once ``bucket_end`` has passed);
        ``None`` otherwise (then ``tally``, if set, is called)."""
        ...

    def roll_window(self) -> None:
        """Start the rate window's new bucket (``window`` is set)."""
        ...

    def acquire(self) -> int:
        """``0``: let the call through; ``-1``: reject; ``> 0``: a trial permit token."""
        ...

    def on_success(self, token: int) -> None: ...
    def on_failure(self, token: int, reason: str, slow: bool = False, trip: bool = False) -> None:
        """Count a failure (``slow``: it also took longer than ``slow_call_seconds``;
        ``trip``: it matched the policy's ``open_on``, which opens the circuit at once)."""
        ...

    def on_exception(self, token: int, exc: BaseException) -> None:
        """``on_failure`` with the reason ``"Type: message"`` of ``exc``, worked out only
        when needed (a backend that stores it, or a reader). A handle whose ``on_exception``
        never raises, whatever goes wrong inside (it logs with ``log_record_error``), says so
        with a class attribute ``on_exception_never_raises = True``: the call paths then call
        it without a guard of their own (a guard costs a failure about 40 ns). Any other
        handle's is called inside one."""
        ...

    def on_slow_success(self, token: int) -> None:
        """A success that took longer than the policy's ``slow_call_seconds``."""
        ...

    def on_ignored(self, token: int) -> None: ...
    def on_release(self, token: int) -> None:
        """Give back a permit whose call ended without an outcome (e.g. cancelled).

        Never blocks: it is also called from a cancelled coroutine.
        """
        ...

    def on_rejected(self, fallback: bool, observed: bool = False) -> None:
        """Tell listeners that a call was rejected (and whether a fallback served it, or, in
        observe mode, whether it ran anyway)."""
        ...

    async def aacquire(self) -> int: ...
    async def aon_success(self, token: int) -> None: ...
    async def aon_failure(self, token: int, reason: str, slow: bool = False, trip: bool = False) -> None: ...
    async def aon_slow_success(self, token: int) -> None: ...
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
    def hold_open(self, seconds: float) -> None:
        """If open, stay open at least ``seconds`` more (capped by ``max_open_seconds``)."""
        ...

    async def ahold_open(self, seconds: float) -> None: ...

    def force_open(self, reason: str) -> None:
        """Hold the circuit open; ``CircuitBackendError`` if the store could not take it."""
        ...

    def reset(self) -> None:
        """Close the circuit; ``CircuitBackendError`` if the store could not take it."""
        ...

    def disable(self, reason: str) -> None:
        """Let every call through, recording nothing, until ``reset``; ``CircuitBackendError``
        if the store could not take it."""
        ...

    # Optional: ``set_policy(policy)`` governs the live circuit by a new policy, keeping its
    # state, and ``policy_watchers`` (a weak mapping of wrapper to a no-argument callable) is
    # how ``protect``'s wrappers are told to read it; ``CircuitBreaker.set_policy`` uses both.


class Backend(Protocol):
    """Where circuits live: hands out one ``CircuitHandle`` per service (see the module's
    docstring for what each side may rely on)."""

    name: str
    """Short name shown to operators (``"local"``, ``"redis"``)."""

    def circuit(
        self, service: str, policy: ServicePolicy, clock: Clock, listeners: ListenerList
    ) -> CircuitHandle:
        """Return the handle for ``service``, creating it on first use."""
        ...

    def services(self) -> list[str]:
        """Names of the services this backend knows a circuit for."""
        ...

    def describe(self) -> str:
        """Where the state lives, with every secret masked (shown to operators)."""
        ...

    # Optional: ``forget(service, circuit)`` drops an idle circuit (closed, no failures)
    # so that memory follows the services in use; the breaker calls it when present.
    # Optional: ``degraded`` (bool), True while a shared store is unreachable
    # (``CircuitBreaker.storage_available`` reads it); ``namespace_used()``, whether any
    # breaker ever used the store, read without writing (``CircuitBreaker.namespace_used``).

    def initialize(self) -> None:
        """Connect (``CircuitBackendError`` if the store is unreachable)."""
        ...

    def close(self) -> None:
        """Release connections and threads."""
        ...

    async def ainitialize(self) -> None:
        """``initialize`` without blocking the event loop."""
        ...

    async def aclose(self) -> None:
        """``close`` without blocking the event loop."""
        ...
