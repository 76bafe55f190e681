"""What both metrics integrations export, gathered once from the breaker's events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .._counter import AtomicCounter
from ..breaker import CircuitBreaker
from ..events import CircuitEvent, EventKind
from ..state import CircuitSnapshot, CircuitState

__all__ = ["OUTCOMES", "CircuitStats", "ServiceStats"]

OUTCOMES = ("success", "failure", "ignored", "rejected", "fallback", "would_reject", "disabled")
"""Every outcome a call is counted under (the ``outcome`` label of the call metrics); ``disabled``
is a call through a disabled circuit (let through, never counted a success or failure)."""


@dataclass(frozen=True)
class ServiceStats:
    service: str
    calls: dict[str, int]
    transitions: dict[tuple[str, str], int]
    last_opened: float | None
    triggered: dict[tuple[str, str, str], int] | None = None
    """The transitions by (from, to, trigger): an opening's trigger (``"failure_rate"``…),
    ``""`` for a transition that opens nothing."""


class CircuitStats:
    """Counts a breaker's outcomes and transitions, cheaply, for exporters to read.

    Call outcomes are read from each circuit's own atomic counters (``counts``): no
    event is built per call, whatever its outcome. Transitions come from the breaker's
    state-change events, storage health from ``storage_degraded`` /
    ``storage_recovered`` events.
    """

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        backend = breaker.backend
        self.namespace: str = getattr(backend, "namespace", "") or ""
        self._transitions: dict[tuple[str, str, str, str], AtomicCounter] = {}
        self._last_opened: dict[str, float] = {}
        self._lock = threading.Lock()
        self.storage_degraded = False
        self.storage_degradations = AtomicCounter()
        breaker.add_listener(self._on_event, successes=False, calls=False)

    def close(self) -> None:
        """Stop listening (the counts keep their values)."""
        self.breaker.remove_listener(self._on_event)

    def _counter(self, table: dict, key: tuple[str, ...]) -> AtomicCounter:  # type: ignore[type-arg]
        counter = table.get(key)
        if counter is None:
            with self._lock:
                counter = table.setdefault(key, AtomicCounter())
        return counter  # type: ignore[no-any-return]

    def _on_event(self, event: CircuitEvent) -> None:
        kind = event.kind
        if kind is EventKind.STATE_CHANGE and event.previous_state is not None and event.state is not None:
            key = (event.service, event.previous_state.value, event.state.value, event.trigger or "")
            self._counter(self._transitions, key).increment()
            if event.state is CircuitState.OPEN:
                self._last_opened[event.service] = event.ts
        elif kind is EventKind.STORAGE_DEGRADED:
            self.storage_degraded = True
            self.storage_degradations.increment()
        elif kind is EventKind.STORAGE_RECOVERED:
            self.storage_degraded = False

    def services(self) -> Iterator[ServiceStats]:
        """Current counts for every service this process has a circuit for."""
        circuits = self.breaker.circuits()
        names = set(circuits) | {key[0] for key in self._transitions}
        for service in sorted(names):
            calls = {outcome: 0 for outcome in OUTCOMES}
            circuit = circuits.get(service)
            if circuit is not None:
                counts = circuit.counts
                for outcome in OUTCOMES:
                    calls[outcome] = counts.value_of(outcome)
            triggered = {
                (f, t, why): c.value for (s, f, t, why), c in self._transitions.items() if s == service
            }
            transitions: dict[tuple[str, str], int] = {}
            for (f, t, _), value in triggered.items():
                transitions[f, t] = transitions.get((f, t), 0) + value
            yield ServiceStats(service, calls, transitions, self._last_opened.get(service), triggered)

    def snapshots(self) -> list[CircuitSnapshot]:
        """Current states: the breaker's snapshots, the same the CLI and status router show."""
        return self.breaker.states()
