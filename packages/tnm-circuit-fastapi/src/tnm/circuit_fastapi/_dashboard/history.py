"""The dashboard's short memory of state changes, fed by a breaker listener and by what the page reads."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from tnm.circuit import CircuitBreaker, CircuitEvent, CircuitSnapshot, EventKind

__all__ = ["Change", "StateHistory"]

STORE = "*"
"""``Change.service`` of a change in the store's health (as in ``CircuitEvent``)."""


@dataclass(frozen=True)
class Change:
    """One line of the history, newest first when listed.

    ``previous`` and ``state`` are state values (``"closed"``, ``"open"``…), or
    ``"ok"`` / ``"unreachable"`` for the store (``service == "*"``). ``seen`` is
    True for a change no listener reported but the page noticed when it read the
    circuit (made by another process through a shared store, or a timed move to
    half-open that a shared store reports only at the next write): ``ts`` is then
    when it was noticed, not when it happened.
    """

    ts: float
    service: str
    previous: str | None
    state: str
    reason: str | None = None
    seen: bool = False


class StateHistory:
    """The newest ``size`` state changes of one breaker's circuits.

    ``attach`` registers a listener (no event per successful call) that records the
    changes this process makes, with their reason. Listeners do not hear about changes
    made by other processes, so ``observe`` compares what the page just read with the
    last state it knows and records the difference. Thread-safe: listeners run in the
    callers' threads.
    """

    def __init__(self, size: int) -> None:
        self._changes: deque[Change] = deque(maxlen=size)
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()
        self._breaker: CircuitBreaker | None = None

    def attach(self, breaker: CircuitBreaker) -> None:
        """Listen to ``breaker`` (once; a second call is a no-op)."""
        with self._lock:
            if self._breaker is not None:
                return
            self._breaker = breaker
        breaker.add_listener(self._on_event, successes=False)

    def detach(self) -> None:
        """Stop listening (the recorded changes stay)."""
        with self._lock:
            breaker, self._breaker = self._breaker, None
        if breaker is not None:
            breaker.remove_listener(self._on_event)

    def _on_event(self, event: CircuitEvent) -> None:
        kind = event.kind
        if kind is EventKind.STATE_CHANGE and event.state is not None:
            previous = None if event.previous_state is None else event.previous_state.value
            self._record(Change(event.ts, event.service, previous, event.state.value, event.reason))
        elif kind is EventKind.STORAGE_DEGRADED:
            self._record(Change(event.ts, STORE, "ok", "unreachable", event.reason))
        elif kind is EventKind.STORAGE_RECOVERED:
            self._record(Change(event.ts, STORE, "unreachable", "ok"))

    def _record(self, change: Change) -> None:
        with self._lock:
            self._known[change.service] = change.state
            self._changes.append(change)

    def observe(self, snapshots: Iterable[CircuitSnapshot], now: float) -> None:
        """Record each circuit whose state differs from the last one known (as seen at ``now``).

        A circuit seen for the first time sets the baseline and records nothing.
        """
        with self._lock:
            for snapshot in snapshots:
                state = snapshot.state.value
                previous = self._known.get(snapshot.service)
                self._known[snapshot.service] = state
                if previous is not None and previous != state:
                    self._changes.append(Change(now, snapshot.service, previous, state, seen=True))

    def newest_first(self) -> list[Change]:
        with self._lock:
            return list(reversed(self._changes))
