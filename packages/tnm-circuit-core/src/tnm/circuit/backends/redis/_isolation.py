"""Isolation: this process's own circuit, for when its own calls fail but the fleet's do not.

A fleet-wide circuit decides on every process's calls (and, with
``min_failing_processes``, on how many processes fail). A process whose own trouble
fails its calls (an exhausted pool, a stale DNS cache, a broken sidecar) can then stay
under the fleet's trigger and go unprotected. ``Isolation`` judges this process's own
calls against the same policy: when they meet a trigger while the fleet's circuit stays
closed, this process opens a circuit for itself alone (``opened_by="process"``): its
calls are rejected for the policy's open time, then it lets the policy's trial calls run
(decided here, no round trip) and closes again after ``success_threshold`` of them
succeed; a failed trial isolates it again, with the policy's backoff.

Its evidence is what this process already has: its failures and slow calls (each went
to Redis anyway) and, under a rate policy, the count of its own fast successes that the
rate window keeps (``Operations.pending``). Nothing is added to a healthy call. Under a
count policy, while this process has failures counted its mirror stays dirty, so its next
success takes the recording path and clears them (through the circuit's ``tally`` hook).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ...policies import ServicePolicy
from ...state import CLOSED, HALF_OPEN, OPEN, CircuitState, Figures

__all__ = ["Isolation"]

_EVENTS_MAX = 4096
"""Own failures and slow calls kept for the rate (older ones count as successes' baseline)."""


class Isolation:
    """This process's own verdict on one service (all times on the circuit's monotonic clock).
    Not thread-safe by itself: its owner changes it under the mirror's lock."""

    def __init__(self, policy: ServicePolicy, successes: Callable[[], int]) -> None:
        self._policy = policy
        self._successes = successes
        """This process's fast successes so far (a running total), for the rate triggers."""
        self._events: deque[tuple[float, int, bool, bool]] = deque()
        """(time, successes so far, failed, slow) of each own failure or slow call in the window."""
        self._failed = self._slow = 0
        """How many of ``_events`` failed, and were slow (kept as events come and go: a failure
        never walks the window)."""
        self._baseline = 0
        """Successes so far when the oldest event still counted happened (or left the window)."""
        self.streak: deque[float] = deque(maxlen=policy.max_failures or 1)
        """Own failures since this process's last success, for the count trigger: the newest
        ``max_failures`` of them (older ones can never complete it)."""
        self.state: CircuitState | None = None
        """``OPEN`` or ``HALF_OPEN`` while isolated; ``None`` otherwise."""
        self.until = 0.0
        self.reopenings = 0
        self._trials: deque[float] = deque()
        """When each trial in flight started: a trial never reported (a cancelled call) frees
        its permit after ``trial_timeout_seconds``, as a Redis permit does."""
        self.trial_successes = 0
        self.figures: Figures | None = None
        """This process's own (failures, calls, failure rate, slow rate) when it isolated itself."""

    @property
    def policy(self) -> ServicePolicy:
        return self._policy

    @policy.setter
    def policy(self, policy: ServicePolicy) -> None:
        self._policy = policy
        self.streak = deque(self.streak, maxlen=policy.max_failures or 1)

    def own_success(self) -> None:
        """A success of this process: the count trigger starts again."""
        self.streak.clear()

    def judge(self, now: float, failed: bool, slow: bool) -> str | None:
        """Record an own failure (or slow call); the trigger this process's own calls now meet."""
        policy = self.policy
        window = policy.window_seconds
        events = self._events
        successes = self._successes()
        events.append((now, successes, failed, slow))
        self._failed += failed
        self._slow += slow
        while events and (events[0][0] <= now - window or len(events) > _EVENTS_MAX):
            _, self._baseline, gone_failed, gone_slow = events.popleft()
            self._failed -= gone_failed
            self._slow -= gone_slow
        streak = self.streak
        if failed and policy.max_failures:
            streak.append(now)
        while streak and streak[0] <= now - window:
            streak.popleft()
        calls, failures, slows = successes - self._baseline + len(events), self._failed, self._slow
        trigger = None
        if policy.max_failures and len(streak) >= policy.max_failures:
            trigger = "failures"
        elif policy.counts_calls and calls >= policy.minimum_calls:
            rate, slow_rate = policy.failure_rate_threshold, policy.slow_call_rate_threshold
            if rate is not None and failures >= rate * calls:
                trigger = "failure_rate"
            elif slow_rate is not None and slows >= slow_rate * calls:
                trigger = "slow_call_rate"
        if trigger is not None:
            self.figures = self._figures(len(streak), calls, failures, slows)
        return trigger

    def _figures(self, streak: int, calls: int, failures: int, slows: int) -> Figures:
        policy = self.policy
        if not policy.counts_calls:
            return streak, None, None, None
        slow_rate = None if policy.slow_call_rate_threshold is None else slows / calls if calls else 0.0
        return (
            (streak if policy.max_failures else failures),
            calls,
            failures / calls if calls else 0.0,
            slow_rate,
        )

    def isolate(self, now: float) -> float:
        """Isolated now (again, after a failed trial: with the policy's backoff); its duration."""
        if self.state is HALF_OPEN:
            self.reopenings += 1
        duration = self.policy.open_duration(self.reopenings)
        self.state, self.until = OPEN, now + duration
        self._trials.clear()
        self.trial_successes = 0
        self.streak.clear()
        return duration

    def acquire(self, now: float) -> tuple[bool, bool]:
        """(admitted, turned half-open now): past its open time, the policy's trials run."""
        if self.state is OPEN:
            if now < self.until:
                return False, False
            self.state, self.trial_successes = HALF_OPEN, 0
            self._trials.clear()
            turned = True
        else:
            turned = False
        trials = self._trials
        while trials and trials[0] <= now - self.policy.trial_timeout_seconds:
            trials.popleft()
        if len(trials) >= self.policy.half_open_max_calls:
            return False, turned
        trials.append(now)
        return True, turned

    def trial_succeeded(self) -> bool:
        """A trial succeeded; True if that closes the isolation."""
        if self.state is not HALF_OPEN:
            return False
        self.release()
        self.trial_successes += 1
        if self.trial_successes < self.policy.success_threshold:
            return False
        self.clear()
        return True

    def release(self) -> None:
        """A trial that neither succeeded nor failed (cancelled, ignored): its permit comes back."""
        if self.state is HALF_OPEN and self._trials:
            self._trials.popleft()

    def holds_evidence(self) -> bool:
        """Isolated, or with own failures or slow calls counted (else ``clear`` has nothing to do)."""
        return self.state is not None or bool(self._events) or bool(self.streak)

    def clear(self) -> None:
        """Not isolated (its trials succeeded, or the fleet's circuit decides now)."""
        self.state = None
        self.until = 0.0
        self.reopenings = self.trial_successes = 0
        self._trials.clear()
        self.figures = None
        self.streak.clear()
        self._events.clear()
        self._failed = self._slow = 0
        self._baseline = self._successes()

    def presented(self) -> tuple[CircuitState, float]:
        """(state, open_until) the call path sees while isolated and the fleet's circuit is closed."""
        if self.state is OPEN:
            return OPEN, self.until
        return (HALF_OPEN if self.state is HALF_OPEN else CLOSED), 0.0
