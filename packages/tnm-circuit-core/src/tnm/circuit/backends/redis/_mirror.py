"""One circuit's mirror: what this process knows of the shared state, and how it changes.

The call path reads only ``state``, ``dirty`` and ``open_until``. ``open_until`` is
the monotonic time before which a call is rejected without asking Redis: the open
deadline, infinity while forced open, or, in half-open with every trial permit taken,
the earliest permit's deadline.

A new mirror is *cold*: it does not know the shared state yet, so it says ``OPEN``
with no deadline and the first call asks Redis instead of assuming a closed circuit.
Only script replies move a mirror (a caller's, the refresher's, or the listener's
read after a notice): a published notice is a hint to read, never the state itself.

While the store is unreachable, ``fallback`` (a per-process circuit with the same
policy) decides, starting from the last shared state.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ...policies import ServicePolicy
from ...state import CLOSED, DISABLED, FORCED_OPEN, HALF_OPEN, OPEN, CircuitState, Figures
from ..local import LocalCircuit
from ._isolation import Isolation
from ._overrides import Override
from ._script import Reply

if TYPE_CHECKING:
    from ._overrides import Overrides
    from ._store import Store

__all__ = ["Mirror"]

_MS = 1000.0


class Mirror:
    """A service's shared state as this process last read it, and its per-process fallback."""

    def __init__(self, store: Store, overrides: Overrides, service: str, policy: ServicePolicy) -> None:
        self.service = service
        self.policy = policy
        self.state: CircuitState = OPEN  # cold: the first call asks Redis
        self.dirty = False
        self.recheck = False
        """The policy changed while closed: the next success checks the triggers (and is sent)."""
        self.open_until = 0.0
        self.cold = True
        self._store = store
        self._overrides = overrides
        self._health = store.health
        self._seen: tuple[float, int] = (-math.inf, 0)  # (server ms, version) of the newest reply
        self._last: tuple[str, float] | None = None  # (reason, server ms)
        self._failures = 0
        self._reopenings = 0
        self._permits = 0
        self._good: tuple[str, str] = ("", "")  # last valid (state, open_until ms): repairs start there
        self._news_lock = threading.Lock()
        self._operator_thread: int | None = None
        """The thread writing an operator's change now: its reply is taken as the truth."""
        self._shown_max_failures = policy.max_failures
        self._shown_window = policy.window_seconds
        self._window: tuple[int, int, int] = (0, 0, 0)  # calls, failures, slow calls (last reply)
        self._opened: tuple[str | None, tuple[int, int, int, int] | None] = (None, None)
        """Why the circuit opened and (failures, calls, failed, slow) that did (last reply)."""
        self._failing = 0
        """Distinct processes that failed inside the window (last reply)."""
        self.decide_at: float | None = None
        """Monotonic time a rate decision the script deferred is due (the flusher asks then)."""
        self.fallback = LocalCircuit(service, policy, store.clock, store.listeners)
        """Decides calls while Redis is unreachable: same policy, this process only."""
        self.fleet_state: CircuitState = OPEN
        self.others_seen = False
        """Another process called this service inside the window (last reply)."""
        """The fleet's state as last read (``state`` shows this process's isolation over it)."""
        self.isolation = Isolation(policy, self.own_successes)
        """This process's own circuit while its calls fail and the fleet's circuit is closed."""

    def own_successes(self) -> int:
        """This process's fast successes so far (counted under a rate policy only)."""
        return 0

    def accept(self, reply: Reply) -> bool:
        """Mirror a script reply (newest wins); False (nothing changed) for older news.

        The listener, the refresher and callers may bring replies at once: the check and
        the writes are one step under the news lock (never taken on the call path's reads).
        """
        self._store.saw_server_time(reply.now_ms)
        with self._news_lock:
            if reply.others_seen is not None:  # (only a run that may isolate looks: news, even late)
                self.others_seen = reply.others_seen
            seen = (reply.now_ms, reply.version)
            if self._operator_thread is not None and self._operator_thread == threading.get_ident():
                pass  # an operator's own write: newer than anything read before (see operator_writing)
            elif seen < self._seen:
                return False
            elif (
                reply.version < self._seen[1]
                and not reply.repaired
                and reply.state is not self.state
                and self.must_exist()
            ):
                # Versions only grow while the keys live: these were evicted or deleted.
                override = self.held_override()
                self._store.lost[self.service] = override
                self._store.resync_soon()
                if override is not None:
                    return False  # the operator's override holds here until it is written again
            self._seen = seen
            self._write(reply)
            self._reopenings = reply.reopenings
            self._last = reply.last
            self._shown_max_failures = reply.max_failures
            self._shown_window = reply.window_seconds
            self._window = (reply.calls, reply.window_failures, reply.slow_calls)
            self._opened = (reply.opened_by, reply.opened_figures)
            self._failing = reply.failing_processes
            due = reply.decision_due_ms
            self.decide_at = None if due is None else self._store.to_monotonic(due, reply.now_ms)
            return True

    def _write(self, reply: Reply) -> None:
        state, now_ms, permits = reply.state, reply.now_ms, reply.permits
        self._good = (state.value, str(int(reply.open_until_ms)))
        self._failures = reply.failures
        self._permits = permits
        to_monotonic = self._store.to_monotonic
        if state is OPEN:
            open_until = to_monotonic(reply.open_until_ms, now_ms)
        elif state is FORCED_OPEN:
            open_until = math.inf
        elif state is HALF_OPEN and permits >= self.policy.half_open_max_calls and reply.earliest_permit_ms:
            open_until = to_monotonic(reply.earliest_permit_ms, now_ms)
        else:
            open_until = 0.0
        self.fleet_state = state
        isolation = self.isolation
        # This process's own failures (the count trigger's) keep it dirty too: its next success
        # must be seen, to clear them, even after another process's success cleared the fleet's.
        dirty = state is CLOSED and (reply.failures > 0 or bool(isolation.streak) or self.recheck)
        if state is not CLOSED:
            if isolation.holds_evidence():  # the fleet's circuit decides for everyone now
                isolation.clear()
        elif isolation.state is not None:  # this process stays isolated: calls ask it
            state, open_until = isolation.presented()
            dirty = True
        self.dirty = dirty
        self.open_until = open_until
        self.state = state
        self.cold = False

    def _opened_view(self) -> tuple[str | None, Figures | None]:
        """Why the circuit opened and the figures that did, as a snapshot reports them."""
        if self.isolation.state is not None and self.state is not CLOSED:
            return "process", self.isolation.figures
        opened_by, frozen = self._opened
        if opened_by is None or self.state not in (OPEN, HALF_OPEN, FORCED_OPEN):
            return None, None
        if frozen is None:
            return opened_by, None
        failures, calls, failed, slow = frozen
        return opened_by, self._figures(failures, (calls, failed, slow))

    def _figures(self, failures: int, window: tuple[int, int, int]) -> Figures:
        calls, failed, slow = window
        if not self.policy.counts_calls:
            return failures, None, None, None
        slow_rate = None
        if self.policy.slow_call_rate_threshold is not None:
            slow_rate = slow / calls if calls else 0.0
        return (
            failures if self._shown_max_failures else failed,
            calls,
            failed / calls if calls else 0.0,
            slow_rate,
        )

    def last_known_reason(self) -> str | None:
        return None if self._last is None else self._last[0]

    def held_override(self) -> Override | None:
        """The operator's override this mirror shows, if any (to restore after a data loss)."""
        if self.state is FORCED_OPEN:
            return Override("force_open", self.last_known_reason() or "forced open")
        if self.state is DISABLED:
            return Override("disable", self.last_known_reason() or "disabled")
        return None

    @property
    def seen_version(self) -> int:
        """The newest version of the circuit's keys this mirror has read (versions only grow
        while the keys live)."""
        return self._seen[1]

    def keys_lost(self) -> None:
        """Its keys were found missing: the next reply (version restarted) is not a loss again."""
        with self._news_lock:
            self._store.lost[self.service] = self.held_override()
            self._seen = (self._seen[0], 0)

    @contextmanager
    def operator_writing(self) -> Iterator[None]:
        """An operator's change is written on this thread: its reply is the truth, whatever
        was read before it (a version from before the keys were lost and made again, a time
        from a server clock that runs ahead of the one now answering)."""
        with self._news_lock:
            self._operator_thread = threading.get_ident()
        try:
            yield
        finally:
            with self._news_lock:
                self._operator_thread = None

    def must_exist(self) -> bool:
        """True if the circuit's keys must be in Redis now (their loss is a loss of state):
        forced open, disabled (kept until reset), or open before its deadline (kept past it)."""
        state = self.state
        if self.cold or state is CLOSED or state is HALF_OPEN or self.isolation.state is not None:
            return False
        return state is not OPEN or self.fallback.monotonic() < self.open_until

    def rejoin(self) -> None:
        """The store is back: a circuit never read (first used during the outage) asks it next."""
        if self.cold:
            self.state, self.dirty, self.open_until = OPEN, False, 0.0

    def start_alone(self) -> None:
        """The store is gone: the per-process circuit starts from the last shared state (or,
        for a circuit never read, from the fleet's registry of overrides)."""
        if self.cold:
            if self._overrides.forced_open(self.service):
                self.fallback.assume(FORCED_OPEN, math.inf, 0, None)
        else:
            now = self.fallback.monotonic()
            open_until = self.open_until if self.state is OPEN else 0.0
            last = None
            if self._last is not None:
                age = max(0.0, (self._store.server_ms_now() - self._last[1]) / _MS)
                last = (self._last[0], now - age)
            self.fallback.assume(self.state, open_until, self._reopenings, last, self._opened_view())
        self.copy_fallback()

    def copy_fallback(self) -> None:
        """While the store is down: mirror the per-process circuit, or refuse every call."""
        if self._health.on_storage_error == "local":
            fb = self.fallback
            self.state, self.dirty, self.open_until = fb.state, fb.dirty, fb.open_until
        else:
            self.state, self.dirty, self.open_until = FORCED_OPEN, False, math.inf
