"""The circuit state machine as a pure model: no locks, no clock, no I/O.

Every operation takes the current monotonic time ``now`` and appends any state
change to ``changes``; the backend that owns a model supplies time and mutual
exclusion. The Redis backend implements the same transitions in Lua, and the tests
hold both to the same reference model.

    CLOSED --max_failures in window--> OPEN --open time elapsed--> HALF_OPEN
    HALF_OPEN --success_threshold successes--> CLOSED
    HALF_OPEN --a failure--> OPEN (open time grows by backoff_multiplier)
    any --force_open--> FORCED_OPEN --reset--> CLOSED
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

from .policies import ServicePolicy

__all__ = ["CircuitModel", "CircuitSnapshot", "CircuitState", "Transition"]


class CircuitState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"

    def __str__(self) -> str:
        return self.value


CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN

Transition = tuple[CircuitState, CircuitState]

# Results of CircuitModel.admit (a positive value is a trial permit token).
PASS = 0
REJECT = -1


@dataclass(frozen=True)
class CircuitSnapshot:
    """One service's circuit as seen at one moment (for status pages, CLIs and metrics)."""

    service: str
    state: CircuitState
    failures: int
    max_failures: int
    window_seconds: float
    retry_after: float | None
    last_failure: dict[str, Any] | None
    trials_in_flight: int = 0
    reopenings: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (state as its string value)."""
        return {
            "service": self.service,
            "state": self.state.value,
            "failures": self.failures,
            "max_failures": self.max_failures,
            "window_seconds": self.window_seconds,
            "retry_after": self.retry_after,
            "last_failure": self.last_failure,
            "trials_in_flight": self.trials_in_flight,
            "reopenings": self.reopenings,
        }


class CircuitModel:
    """One service's circuit. Not thread-safe by itself: its owner serialises access.

    Only the newest ``max_failures`` failure times are kept: older ones can never
    bring the count in the window up to the threshold, so memory is bounded.
    """

    __slots__ = (
        "_failures",
        "_next_token",
        "_open_until",
        "_permits",
        "_trial_successes",
        "last_failure",
        "policy",
        "reopenings",
        "service",
        "state",
    )

    def __init__(self, service: str, policy: ServicePolicy) -> None:
        self.service = service
        self.policy = policy
        self.state = CLOSED
        self.last_failure: tuple[str, float] | None = None
        self.reopenings = 0
        self._failures: deque[float] = deque(maxlen=policy.max_failures)
        self._open_until = 0.0
        self._permits: dict[int, float] = {}
        self._trial_successes = 0
        self._next_token = 0

    # -- reads ---------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """True while a success has something to reset (closed with failures recorded)."""
        return bool(self._failures) and self.state is CLOSED

    def failures_in_window(self, now: float) -> int:
        start = now - self.policy.window_seconds
        return sum(1 for t in self._failures if t > start)

    def retry_after(self, now: float) -> float | None:
        if self.state is FORCED_OPEN:
            return None
        if self.state is OPEN:
            return max(0.0, self._open_until - now)
        if self.state is HALF_OPEN and len(self._permits) >= self.policy.half_open_max_calls:
            return max(0.0, min(self._permits.values()) - now)
        return 0.0

    def available(self, now: float) -> bool:
        """Would a call be let through now? Takes no permit."""
        state = self.state
        if state is CLOSED:
            return True
        if state is OPEN:
            return now >= self._open_until
        if state is HALF_OPEN:
            live = sum(1 for deadline in self._permits.values() if deadline > now)
            return live < self.policy.half_open_max_calls
        return False

    def snapshot(self, now: float) -> CircuitSnapshot:
        last = self.last_failure
        return CircuitSnapshot(
            service=self.service,
            state=self.state,
            failures=self.failures_in_window(now),
            max_failures=self.policy.max_failures,
            window_seconds=self.policy.window_seconds,
            retry_after=self.retry_after(now),
            last_failure=None if last is None else {"reason": last[0], "ts": last[1]},
            trials_in_flight=len(self._permits),
            reopenings=self.reopenings,
        )

    # -- transitions ---------------------------------------------------------

    def _enter(self, state: CircuitState, changes: list[Transition]) -> None:
        if state is not self.state:
            changes.append((self.state, state))
            self.state = state

    def _open(self, now: float, changes: list[Transition]) -> None:
        self._open_until = now + self.policy.open_duration(self.reopenings)
        self._permits.clear()
        self._trial_successes = 0
        self._enter(OPEN, changes)

    def _close(self, changes: list[Transition]) -> None:
        self._failures.clear()
        self._permits.clear()
        self._trial_successes = 0
        self.reopenings = 0
        self._enter(CLOSED, changes)

    def refresh(self, now: float, changes: list[Transition]) -> None:
        """Apply what the passing of time decides: open → half-open, stale permits expire."""
        if self.state is OPEN and now >= self._open_until:
            self._trial_successes = 0
            self._enter(HALF_OPEN, changes)
        elif self.state is HALF_OPEN and self._permits:
            for token in [t for t, deadline in self._permits.items() if deadline <= now]:
                del self._permits[token]

    def admit(self, now: float, changes: list[Transition]) -> int:
        """Decide a call: ``PASS``, ``REJECT``, or a positive trial permit token."""
        self.refresh(now, changes)
        state = self.state
        if state is CLOSED:
            return PASS
        if state is HALF_OPEN and len(self._permits) < self.policy.half_open_max_calls:
            self._next_token += 1
            self._permits[self._next_token] = now + self.policy.trial_timeout_seconds
            return self._next_token
        return REJECT

    def release(self, token: int) -> None:
        """Give a trial permit back without an outcome (ignored exception, cancellation)."""
        if token > 0:
            self._permits.pop(token, None)

    def record_failure(
        self, now: float, wall: float, reason: str, token: int, changes: list[Transition]
    ) -> None:
        self.refresh(now, changes)
        self.release(token)
        self.last_failure = (reason, wall)
        state = self.state
        if state is CLOSED:
            failures = self._failures
            failures.append(now)
            if len(failures) == failures.maxlen and failures[0] > now - self.policy.window_seconds:
                self._open(now, changes)
        elif state is HALF_OPEN:
            self.reopenings += 1
            self._open(now, changes)
        # OPEN / FORCED_OPEN: a late failure of a call admitted earlier changes nothing more.

    def record_success(self, now: float, token: int, changes: list[Transition]) -> None:
        self.refresh(now, changes)
        self.release(token)
        state = self.state
        if state is CLOSED:
            self._failures.clear()
        elif state is HALF_OPEN:
            self._trial_successes += 1
            if self._trial_successes >= self.policy.success_threshold:
                self._close(changes)

    def force_open(self, wall: float, reason: str, changes: list[Transition]) -> None:
        self.last_failure = (reason, wall)
        self._permits.clear()
        self._enter(FORCED_OPEN, changes)

    def reset(self, changes: list[Transition]) -> None:
        self._close(changes)
