"""The call path's side of isolation (``_isolation.py`` holds the verdict itself).

``Isolating`` sits between ``Operations`` and ``RedisCircuit``: it judges this process's
own failures before they go to Redis (so the same round trip tells the script that this
process isolated itself, for the quorum), isolates the process when the fleet's circuit
stayed closed, admits its local trials and closes it again, with the events and the
one WARNING line that say so. A healthy call never reaches this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...events import EventKind
from ...state import CLOSED, HALF_OPEN, OPEN, PASS, REJECT, CircuitState
from ._operations import Operations

if TYPE_CHECKING:
    from ...policies import ServicePolicy
    from ._overrides import Overrides
    from ._store import Store

__all__ = ["Isolating"]

_MS = 1000.0


class Isolating(Operations):
    """Operations plus this process's own circuit (its isolation)."""

    def __init__(self, store: Store, overrides: Overrides, service: str, policy: ServicePolicy) -> None:
        super().__init__(store, overrides, service, policy)
        self._plain_tally = self.tally
        self._isolation_trigger = ""

    def set_policy(self, policy: ServicePolicy) -> None:
        """The new policy judges this process's own calls too (from its next failure)."""
        super().set_policy(policy)
        self._plain_tally = self.tally
        with self._news_lock:
            self.isolation.policy = policy

    # -- judging this process's own calls -----------------------------------------------------

    def _clear_streak_then_tally(self) -> None:
        """``tally`` while this process has failures counted: its success clears them."""
        with self._news_lock:  # ``Isolation`` is changed under the mirror's lock only
            self.isolation.own_success()
        self.tally = plain = self._plain_tally
        if plain is not None:
            plain()

    def judge_own(self, failed: bool, slow: bool) -> str:
        """Record an own failure or slow call before it goes to Redis; ``"<trigger>:<ms>"`` if it
        isolates this process (the script counts isolated processes for the quorum), else ``""``."""
        isolation = self.isolation
        if isolation.state is OPEN:
            return ""  # a call admitted before this process isolated itself
        now = self._monotonic_now()
        if isolation.state is HALF_OPEN:
            trigger = self._isolation_trigger  # a failed trial: isolated again
            reopenings = isolation.reopenings + 1
        else:
            with self._news_lock:  # the listener may clear it meanwhile (the fleet's circuit opened)
                trigger = isolation.judge(now, failed, slow) or ""
            reopenings = 0
            if failed and self.policy.max_failures:
                self.tally = self._clear_streak_then_tally
        if not trigger:
            return ""
        return f"{trigger}:{int(self.policy.open_duration(reopenings) * _MS)}"

    def _monotonic_now(self) -> float:
        return self._clock.monotonic()

    def isolate_if(self, isolating: str, reason: str) -> None:
        """After the reply: if the fleet's circuit stayed closed, this process isolates itself."""
        if not isolating or self.fleet_state is not CLOSED or not self.others_seen:
            return  # the fleet's circuit opened, or this process is the fleet: nothing to isolate
        isolation = self.isolation
        with self._news_lock:
            if self.fleet_state is not CLOSED:
                return
            previous = self.state if isolation.state is not None else CLOSED
            first = isolation.state is None
            trigger = isolating.split(":", 1)[0]
            duration = isolation.isolate(self._monotonic_now())
            self._isolation_trigger = trigger
            self.state, self.open_until, self.dirty = OPEN, isolation.until, True
        if first:
            reason = (
                f"this process ({self._store.reporter}) isolated for {duration:g} s: its own calls met the"
                f" {trigger} trigger while the fleet's circuit stays closed; last failure: {reason}"
            )
        self._transition(previous, OPEN, reason)

    def _transition(self, previous: CircuitState, state: CircuitState, reason: str | None) -> None:
        self._listeners.notify(
            None, self.service, state, [(previous, state)], self._clock.time, reason, "process"
        )

    # -- this process's trials ----------------------------------------------------------------

    def isolated_acquire(self) -> int:
        """Admit a call while isolated: rejected until its open time ends, then the trials."""
        isolation = self.isolation
        with self._news_lock:
            admitted, turned = isolation.acquire(self._monotonic_now())
            if turned and self.fleet_state is CLOSED:
                self.state, self.open_until = HALF_OPEN, 0.0
        if turned:
            self._transition(OPEN, HALF_OPEN, None)
        return PASS if admitted else REJECT

    def isolated_success(self) -> None:
        """A success while isolated: counted for the fleet; a trial's may end the isolation."""
        if self._plain_tally is not None:
            self._plain_tally()
        with self._news_lock:
            closed = self.isolation.trial_succeeded()
            if closed:
                self.state, self.open_until, self.dirty = self.fleet_state, 0.0, True
        if self._listeners.success_callbacks:
            self._notify(EventKind.SUCCESS, [])
        if closed:
            self._transition(HALF_OPEN, CLOSED, None)

    def isolated_release(self) -> None:
        with self._news_lock:
            self.isolation.release()
