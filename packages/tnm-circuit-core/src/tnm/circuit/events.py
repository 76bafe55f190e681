"""Events for listeners (metrics, logs, alerts).

A listener is any callable taking one ``CircuitEvent``. It runs after the breaker
released its locks; one that raises is logged and skipped, never breaking the call.
Events are only built when at least one listener is registered.

Which thread a listener runs in depends on what caused the event:

* ``success``, ``failure``, ``ignored``, ``rejected``, ``fallback``, and the
  ``state_change`` a call, ``record_failure``/``record_success``, ``force_open`` or
  ``reset`` made: the thread of that call (for async code, the event loop's thread).
* ``storage_degraded``: the thread that first saw the store fail, a caller's or one
  of the Redis backend's background threads.
* ``storage_recovered`` and ``storage_reset``: the Redis backend's background
  refresher thread, or the thread running ``initialize()`` (a worker thread for
  ``ainitialize()``).
* ``storage_repaired``: a caller's thread or one of the Redis backend's background
  threads (the refresher, the listener reading a circuit another process changed, the
  success flusher), whichever read the corrupt data.
* ``policy_changed``: the thread that called ``set_policy``/``clear_policy``, or, for a
  fleet-wide change made elsewhere, the Redis backend's background threads.
* On the Redis backend, the ``state_change`` made by returning the trial permit of a
  cancelled call comes from the refresher thread, which does that work so that the
  cancelled coroutine never waits.

So a listener that touches an event loop or non-thread-safe state must hand the event
over (``loop.call_soon_threadsafe``, a queue) rather than assume the caller's thread.
Changes made by other processes update this process's mirrors but emit no event here,
except ``policy_changed``: each process that applies a fleet-wide policy change says so.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .exceptions import InvalidConfigTypeError
from .state import CircuitState, Transition

__all__ = ["CircuitEvent", "EventKind", "Listener", "ListenerList"]

logger = logging.getLogger("tnm.circuit")


class EventKind(str, enum.Enum):
    """What a ``CircuitEvent`` reports; a ``str``, so it compares equal to its value."""

    STATE_CHANGE = "state_change"
    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"
    REJECTED = "rejected"
    FALLBACK = "fallback"
    WOULD_REJECT = "would_reject"
    """Observe mode: the circuit would have rejected this call; it ran."""
    STORAGE_DEGRADED = "storage_degraded"
    STORAGE_RECOVERED = "storage_recovered"
    STORAGE_RESET = "storage_reset"
    STORAGE_REPAIRED = "storage_repaired"
    POLICY_CHANGED = "policy_changed"
    """The service's effective policy changed (``source`` says where it now comes from)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class CircuitEvent:
    """What happened to ``service``'s circuit.

    ``state`` is the state after the event; ``previous_state`` is set for
    ``STATE_CHANGE``; ``reason`` for failures and for openings caused by one.
    ``ts`` is wall-clock epoch seconds. Storage events (``storage_degraded``,
    ``storage_recovered``, and ``storage_reset`` when the store lost its data) concern
    every circuit: their ``service`` is ``"*"`` and their ``state`` is ``None``.
    ``storage_repaired`` names the one circuit whose stored data was corrupt and was
    rewritten from its last good state; ``reason`` says what was wrong.
    ``trigger`` is set on the ``STATE_CHANGE`` that opens a circuit (to ``open`` or
    ``forced_open``): why it opened, the value ``CircuitSnapshot.opened_by`` then reports
    (``"failures"``, ``"failure_rate"``, ``"slow_call_rate"``, ``"trial_failed"``,
    ``"operator"``, ``"open_on"``).
    ``policy_changed`` is emitted by every process that applies a run-time policy change
    (``CircuitBreaker.set_policy`` / ``clear_policy``, here or, fleet-wide, elsewhere): its
    ``source`` is where the effective policy now comes from (``"code"``, ``"process"`` or
    ``"fleet"``), its ``reason`` the fields that changed (``"max_failures: 5 -> 3"``), or why
    a fleet change was refused here (``"refused: ..."``).
    """

    kind: EventKind
    service: str
    state: CircuitState | None
    ts: float
    previous_state: CircuitState | None = None
    reason: str | None = None
    trigger: str | None = None
    source: str | None = None


Listener = Callable[[CircuitEvent], object]
"""What ``CircuitBreaker.add_listener`` takes: a callable given each ``CircuitEvent``
(its return value is ignored; an exception it raises is logged, never seen by the call)."""


_PER_CALL = frozenset(
    {EventKind.FAILURE, EventKind.IGNORED, EventKind.REJECTED, EventKind.FALLBACK, EventKind.WOULD_REJECT}
)


class ListenerList:
    """The breaker's listeners. The call path checks ``callbacks`` (a plain tuple: every
    listener) before counting an outcome or building any event, so having none costs one
    attribute read. Listeners added with ``successes=False`` get no event per successful
    call, and with ``calls=False`` no event per call at all (metrics, which read each
    circuit's ``counts`` instead); every listener gets state changes and storage events."""

    __slots__ = ("call_callbacks", "callbacks", "success_callbacks")

    def __init__(self) -> None:
        self.callbacks: tuple[Listener, ...] = ()
        self.call_callbacks: tuple[Listener, ...] = ()
        self.success_callbacks: tuple[Listener, ...] = ()

    def add(self, listener: Listener, *, successes: bool = True, calls: bool = True) -> None:
        """Call ``listener`` for each event (see ``CircuitBreaker.add_listener``)."""
        if not callable(listener):
            raise InvalidConfigTypeError("listener", f"must be callable, got {listener!r}")
        # Replace, never mutate: a dispatch in another thread keeps iterating its tuple.
        self.callbacks = (*self.callbacks, listener)
        if calls:
            self.call_callbacks = (*self.call_callbacks, listener)
        if successes and calls:
            self.success_callbacks = (*self.success_callbacks, listener)

    def remove(self, listener: Listener) -> None:
        """Stop calling ``listener`` (``ValueError`` if it was not added)."""
        items = list(self.callbacks)
        items.remove(listener)
        self.callbacks = tuple(items)
        self.call_callbacks = tuple(item for item in self.call_callbacks if item != listener)
        self.success_callbacks = tuple(item for item in self.success_callbacks if item != listener)

    def emit(self, event: CircuitEvent) -> None:
        """Give ``event`` to the listeners that asked for its kind; a listener that raises is
        logged and never affects the call or the other listeners."""
        kind = event.kind
        if kind is EventKind.SUCCESS:
            targets = self.success_callbacks
        elif kind in _PER_CALL:
            targets = self.call_callbacks
        else:
            targets = self.callbacks
        for listener in targets:
            try:
                listener(event)
            except Exception:
                logger.exception("circuit listener %r failed on %s event", listener, event.kind)

    def notify(
        self,
        kind: EventKind | None,
        service: str,
        state: CircuitState,
        changes: list[Transition],
        now: Callable[[], float],
        reason: str | None = None,
        trigger: str | None = None,
    ) -> None:
        """Emit a ``kind`` event (if any) and the state ``changes``; ``now`` gives the wall time,
        read only if something is emitted; ``trigger`` is why an opening among them opened."""
        if not changes and not self.call_callbacks:
            return
        ts = now()
        if kind is not None and self.call_callbacks:
            self.emit(CircuitEvent(kind, service, state, ts, reason=reason))
        if changes:
            self.emit_transitions(service, changes, ts, reason, trigger)

    def emit_transitions(
        self,
        service: str,
        changes: list[Transition],
        ts: float,
        reason: str | None,
        trigger: str | None = None,
    ) -> None:
        """Log each state change and hand it to the listeners (an opening with its ``trigger``)."""
        for previous, state in changes:
            opening = state is CircuitState.OPEN or state is CircuitState.FORCED_OPEN
            if state is CircuitState.OPEN:
                by = f"; opened_by={trigger}" if trigger else ""
                if reason:
                    logger.warning(
                        "circuit %r opened (was %s%s); last failure: %s", service, previous, by, reason
                    )
                else:
                    logger.warning("circuit %r opened (was %s%s)", service, previous, by)
            else:
                logger.info("circuit %r: %s -> %s", service, previous, state)
            if self.callbacks:
                self.emit(
                    CircuitEvent(
                        EventKind.STATE_CHANGE,
                        service,
                        state,
                        ts,
                        previous,
                        reason,
                        trigger if opening else None,
                    )
                )
