"""The in-process backend: state in memory, one short lock per service.

Thread-safe and asyncio-safe: the lock guards only the few field updates of a
transition and is never held while a protected function runs or across an
``await``. A healthy call (closed, nothing to reset) takes no lock at all. It writes
no files and opens no sockets.
"""

from __future__ import annotations

import threading
from typing import Any

from ..clock import Clock
from ..events import CircuitEvent, EventKind, ListenerList
from ..exceptions import CircuitOpenError
from ..policies import ServicePolicy
from ..state import CLOSED, CircuitModel, CircuitSnapshot, CircuitState, Transition

__all__ = ["LocalBackend", "LocalCircuit"]


class LocalCircuit:
    """A service's circuit owned by this process."""

    __slots__ = ("_clock", "_listeners", "_lock", "_model", "dirty", "policy", "service", "state")

    def __init__(self, service: str, policy: ServicePolicy, clock: Clock, listeners: ListenerList) -> None:
        self.service = service
        self.policy = policy
        self.state: CircuitState = CLOSED
        self.dirty = False
        self._model = CircuitModel(service, policy)
        self._clock = clock
        self._listeners = listeners
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<LocalCircuit {self.service!r} {self.state.value}>"

    def _sync(self) -> None:
        # Publish the model's hot fields for the lock-free fast path.
        model = self._model
        self.state = model.state
        self.dirty = model.dirty

    def _notify(self, kind: EventKind | None, changes: list[Transition], reason: str | None = None) -> None:
        listeners = self._listeners
        if not changes and not listeners:
            return
        ts = self._clock.time()
        if kind is not None and listeners:
            listeners.emit(CircuitEvent(kind, self.service, self.state, ts, reason=reason))
        if changes:
            listeners.emit_transitions(self.service, changes, ts, reason)

    # -- the call path ---------------------------------------------------------

    def acquire(self) -> int:
        changes: list[Transition] = []
        with self._lock:
            token = self._model.admit(self._clock.monotonic(), changes)
            self._sync()
        if changes:
            self._notify(None, changes)
        return token

    def on_success(self, token: int) -> None:
        if token == 0 and not self.dirty and self.state is CLOSED:
            if self._listeners:
                self._notify(EventKind.SUCCESS, [])
            return
        changes: list[Transition] = []
        with self._lock:
            self._model.record_success(self._clock.monotonic(), token, changes)
            self._sync()
        self._notify(EventKind.SUCCESS, changes)

    def on_failure(self, token: int, reason: str) -> None:
        changes: list[Transition] = []
        clock = self._clock
        with self._lock:
            self._model.record_failure(clock.monotonic(), clock.time(), reason, token, changes)
            self._sync()
        self._notify(EventKind.FAILURE, changes, reason)

    def on_ignored(self, token: int) -> None:
        self.on_release(token)
        if self._listeners:
            self._notify(EventKind.IGNORED, [])

    def on_release(self, token: int) -> None:
        if token > 0:
            with self._lock:
                self._model.release(token)

    def on_rejected(self, fallback: bool) -> None:
        if self._listeners:
            self._notify(EventKind.FALLBACK if fallback else EventKind.REJECTED, [])

    async def aacquire(self) -> int:
        return self.acquire()

    async def aon_success(self, token: int) -> None:
        self.on_success(token)

    async def aon_failure(self, token: int, reason: str) -> None:
        self.on_failure(token, reason)

    async def aon_ignored(self, token: int) -> None:
        self.on_ignored(token)

    # -- inspection and manual control -----------------------------------------

    def _refreshed(self) -> list[Transition]:
        changes: list[Transition] = []
        self._model.refresh(self._clock.monotonic(), changes)
        self._sync()
        return changes

    def is_available(self) -> bool:
        if self.state is CLOSED:
            return True
        with self._lock:
            changes = self._refreshed()
            available = self._model.available(self._clock.monotonic())
        if changes:
            self._notify(None, changes)
        return available

    def snapshot(self) -> CircuitSnapshot:
        with self._lock:
            changes = self._refreshed()
            snap = self._model.snapshot(self._clock.monotonic())
        if changes:
            self._notify(None, changes)
        return snap

    def open_error(self) -> CircuitOpenError:
        model = self._model
        now = self._clock.monotonic()
        last = model.last_failure
        return CircuitOpenError(
            self.service,
            model.retry_after(now),
            None if last is None else {"reason": last[0], "ts": last[1]},
            state=model.state,
            failures=model.failures_in_window(now),
            max_failures=self.policy.max_failures,
            window_seconds=self.policy.window_seconds,
        )

    def last_failure(self) -> dict[str, Any] | None:
        last = self._model.last_failure
        return None if last is None else {"reason": last[0], "ts": last[1]}

    def force_open(self, reason: str) -> None:
        changes: list[Transition] = []
        with self._lock:
            self._model.force_open(self._clock.time(), reason, changes)
            self._sync()
        self._notify(None, changes, reason)

    def reset(self) -> None:
        changes: list[Transition] = []
        with self._lock:
            self._model.reset(changes)
            self._sync()
        self._notify(None, changes)


class LocalBackend:
    """Circuits in this process's memory (the default backend)."""

    name = "local"

    def __init__(self) -> None:
        self._circuits: dict[str, LocalCircuit] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalBackend(services={len(self._circuits)})"

    def circuit(
        self, service: str, policy: ServicePolicy, clock: Clock, listeners: ListenerList
    ) -> LocalCircuit:
        circuit = self._circuits.get(service)
        if circuit is None:
            with self._lock:
                circuit = self._circuits.get(service)
                if circuit is None:
                    circuit = LocalCircuit(service, policy, clock, listeners)
                    self._circuits[service] = circuit
        return circuit

    def services(self) -> list[str]:
        return sorted(self._circuits)

    def initialize(self) -> None:
        """Nothing to connect to."""

    def close(self) -> None:
        """Nothing to release; circuits stay in memory for the breaker's lifetime."""

    async def ainitialize(self) -> None:
        self.initialize()

    async def aclose(self) -> None:
        self.close()
