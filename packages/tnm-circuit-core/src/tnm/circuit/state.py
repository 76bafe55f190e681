"""The circuit state machine as a pure model: no locks, no clock, no I/O.

Every operation takes the current monotonic time ``now`` and appends any state
change to ``changes``; the backend that owns a model supplies time and mutual
exclusion. The Redis backend implements the same transitions in Lua, and the tests
hold both to the same reference model.

    CLOSED --max_failures in window, or a rate trigger--> OPEN --open time elapsed--> HALF_OPEN
    HALF_OPEN --success_threshold successes--> CLOSED
    HALF_OPEN --a failure, or a slow call--> OPEN (open time grows by backoff_multiplier)
    any --force_open--> FORCED_OPEN --reset--> CLOSED
    any --disable--> DISABLED (every call passes, nothing is recorded) --reset--> CLOSED

The rate triggers count calls in ``RATE_BUCKETS`` time buckets of ``policy.bucket_ms``
(bucket ``b`` holds the calls made in ``[b * bucket_ms, (b + 1) * bucket_ms)``); the
window is the current bucket and the ``RATE_BUCKETS - 1`` before it. The Lua script
keeps the same buckets in Redis.
"""

from __future__ import annotations

import enum
import itertools
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._counter import counted
from ._validate import exception_reason
from .policies import RATE_BUCKETS, ServicePolicy

if TYPE_CHECKING:
    from ._counter import CallCounts

__all__ = ["OPENED_BY", "CircuitSnapshot", "CircuitState"]


class CircuitState(str, enum.Enum):
    """Where a circuit stands; a ``str``, so it compares equal to its value (``"open"``).

    ``CLOSED``: calls go through and failures are counted. ``OPEN``: calls are rejected
    until the open time ends. ``HALF_OPEN``: a few trial calls decide whether to close or
    open again. ``FORCED_OPEN``: an operator rejects every call until ``reset``.
    ``DISABLED``: an operator lets every call through, recording nothing, until ``reset``.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
DISABLED = CircuitState.DISABLED

Transition = tuple[CircuitState, CircuitState]

OPENED_BY = ("failures", "failure_rate", "slow_call_rate", "trial_failed", "operator", "open_on", "process")
"""Why a circuit opened (``CircuitSnapshot.opened_by``, ``CircuitEvent.trigger``): the count
trigger, the failure-rate or slow-call-rate trigger, a failed half-open trial, an operator's
``force_open``, an exception listed in the policy's ``open_on``, or (Redis backend) this
process alone, isolated because its own calls met the trigger while the fleet's circuit is
closed."""

Figures = tuple[int, "int | None", "float | None", "float | None"]
"""(failures, calls, failure_rate, slow_call_rate) as a snapshot reports them."""

_NO_BUCKETS: dict[int, list[int]] = {}
_NO_TOTALS = [0, 0, 0]
_NO_COUNT = itertools.count()
_NO_PERMITS: dict[int, float] = {}
"""Placeholders shared by circuits: no rate trigger (never touched), no trial yet (only
ever cleared, which leaves them empty)."""


NO_FAILURES: tuple[float, ...] = ()
"""A circuit's failure times before its first failure."""
_first_failure = threading.Lock()

# Results of CircuitModel.admit (a positive value is a trial permit token).
PASS = 0
REJECT = -1


@dataclass(frozen=True)
class CircuitSnapshot:
    """One service's circuit as seen at one moment (for status pages, CLIs and metrics)."""

    service: str
    state: CircuitState
    failures: int
    max_failures: int | None
    window_seconds: float
    retry_after: float | None
    last_failure: dict[str, Any] | None
    trials_in_flight: int = 0
    reopenings: int = 0
    calls: int | None = None
    """Calls completed in the window; ``None`` unless a rate trigger is set."""
    failure_rate: float | None = None
    """Share of those calls that failed (0.0 with no call); ``None`` unless a rate trigger is set."""
    slow_call_rate: float | None = None
    """Share of those calls that were slow; ``None`` unless ``slow_call_rate_threshold`` is set."""
    opened_by: str | None = None
    """Why the circuit is open (or half-open): one of ``OPENED_BY``; ``None`` while closed or
    disabled. While open or half-open, ``failures``, ``calls`` and the rates are the figures
    that opened it (the first opening's, after a failed trial), kept until it closes."""
    failing_processes: int | None = None
    """Distinct processes that reported a failure inside the window (successes elsewhere do
    not clear it); ``None`` on the local backend, where one process decides alone."""

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
            "calls": self.calls,
            "failure_rate": self.failure_rate,
            "slow_call_rate": self.slow_call_rate,
            "opened_by": self.opened_by,
            "failing_processes": self.failing_processes,
        }


def rate_trip_due(policy: ServicePolicy, calls: int, failures: int, slow: int) -> str | None:
    """Which of ``policy``'s rate triggers these window counts meet (``"failure_rate"`` first,
    then ``"slow_call_rate"``), or ``None`` if they leave a closed circuit closed."""
    if calls < policy.minimum_calls:
        return None
    failure_rate, slow_rate = policy.failure_rate_threshold, policy.slow_call_rate_threshold
    if failure_rate is not None and failures >= failure_rate * calls:
        return "failure_rate"
    if slow_rate is not None and slow >= slow_rate * calls:
        return "slow_call_rate"
    return None


class CircuitModel:
    """One service's circuit. Not thread-safe by itself: its owner serialises access
    (except ``count_closed_failure``, ``ok_counter`` and ``fail_counter``, which are built to run without
    the lock).

    Only the newest ``max_failures`` failure times are kept: older ones can never
    bring the count in the window up to the threshold, so memory is bounded.
    """

    __slots__ = (
        "_buckets",
        "_failures",
        "_max_failures",
        "_next_token",
        "_ok_reads",
        "_opened_figures",
        "_permits",
        "_pinned_ts",
        "_trial_successes",
        "bucket",
        "bucket_end",
        "bucket_ms",
        "counts_calls",
        "dirty",
        "epoch",
        "fail_counter",
        "fail_mark",
        "last_failure",
        "ok_counter",
        "open_until",
        "opened_by",
        "policy",
        "recheck",
        "reopenings",
        "service",
        "state",
        "totals",
        "window",
    )

    def __init__(self, service: str, policy: ServicePolicy) -> None:
        self.service = service
        self.policy = policy
        self.state = CLOSED
        self.dirty = False
        """True while closed with failures recorded, so that a success has a count to reset."""
        self.recheck = False
        """True after a policy change while closed: the next outcome, a success too, first
        checks the triggers under the new policy (so ``dirty`` is set with it)."""
        self.open_until = 0.0
        """While open: when a trial may run; forced open: infinity (both monotonic)."""
        self.last_failure: tuple[str | BaseException, float] | None = None
        """(reason, monotonic time): turned into wall-clock ``ts`` only when read. The reason
        may be the exception itself, formatted only when read (the failure path stays cheap)."""
        self._pinned_ts: tuple[float, float] | None = None
        """``last_failure``'s monotonic time and its wall-clock ``ts``, worked out once (at the
        first read)."""
        self.reopenings = 0
        self._failures: deque[float] | tuple[float, ...] = NO_FAILURES
        """The newest failure times (a deque made at the first failure: an idle circuit has none)."""
        self._max_failures = policy.max_failures or 0  # copies read on every failure
        self.window = policy.window_seconds
        self._permits: dict[int, float] = _NO_PERMITS
        self._trial_successes = 0
        self._next_token = 0
        self.counts_calls = policy.counts_calls
        """A rate trigger is set: every completed call is counted in its time bucket."""
        self.bucket_ms = policy.bucket_ms
        self.bucket = -1
        """The current bucket; its fast successes are counted by ``ok_counter`` (atomic, lock-free)."""
        self.bucket_end = -math.inf
        """Where ``bucket`` ends (monotonic seconds, a few float steps early): a success at or
        after it rolls the window first, and a success before it belongs to ``bucket``."""
        self._buckets: dict[int, list[int]] = _NO_BUCKETS
        """bucket -> [calls, failures, slow calls], fast successes and failures of ``bucket``
        aside (an empty dict until a bucket is settled: no table while idle)."""
        self.totals = _NO_TOTALS
        """The sums of ``_buckets`` (kept as they change: a failure never walks the window)."""
        self.ok_counter = self.fail_counter = _NO_COUNT
        """``next(ok_counter)`` counts a fast success of ``bucket`` (a new counter per bucket:
        ``next`` on it costs less than a bound ``__next__``); ``next(fail_counter)`` a
        failure counted without the lock (see ``LocalCircuit``), on one counter that a roll
        never swaps, so that no failure is lost: both lock-free."""
        self._ok_reads = 0
        """How many times the owner read ``ok_counter``'s count by advancing it (``_ok_count``)."""
        self.fail_mark = 0
        """``fail_counter``'s count when ``bucket`` started: the bucket's failures are the count beyond it."""
        self.epoch = 0
        """Odd while the owner changes ``totals`` or ``fail_mark``, and moved on after each
        change: a failure that reads them without the lock trusts its read only if the epoch
        was even and the same before and after it."""
        if self.counts_calls:  # else the shared placeholders above are never touched
            self._clear_window()
        self.opened_by: str | None = None
        """Why the circuit is open or half-open (one of ``OPENED_BY``); ``None`` otherwise."""
        self._opened_figures: Figures | None = None
        """The figures that opened the circuit, reported until it closes."""

    # -- the rate window (owner holds the lock, except for ``ok_counter``) ----------

    def bucket_of(self, now: float) -> int:
        """The bucket of ``now`` (seconds), from whole milliseconds as the Redis backend counts
        them (``round``, as it stamps a test clock's times for the script)."""
        return round(now * 1000.0) // self.bucket_ms

    def roll(self, now: float) -> None:
        """Move the current bucket to ``now``'s, dropping buckets that left the window."""
        bucket = self.bucket_of(now)
        if bucket <= self.bucket:  # (a time read before another thread's roll: never back)
            return
        self.epoch += 1  # (see ``epoch``)
        # A new ``ok_counter`` first, then the old one read: lock-free successes that go on
        # while this thread waits for the CPU count in the new bucket (only one that fetched
        # ``ok_counter`` just before the swap can be lost). ``fail`` is read where it stands: later
        # failures belong to the new bucket.
        old_ok, ok_reads = self.ok_counter, self._ok_reads
        self.ok_counter = itertools.count()
        self._ok_reads = 0
        mark = counted(self.fail_counter)
        failed = mark - self.fail_mark
        calls = counted(old_ok) - ok_reads + failed
        totals = self.totals
        if calls:
            entry = self._entry(self.bucket)
            entry[0] += calls
            entry[1] += failed
            totals[0] += calls
            totals[1] += failed
        self.fail_mark = mark
        self.bucket = bucket
        # Seconds, so that a success compares without converting; half a millisecond and a few
        # float steps early, so that no time before it can fall in the next bucket by rounding.
        end = ((bucket + 1) * self.bucket_ms - 0.5) / 1000.0
        for _ in range(4):
            end = math.nextafter(end, -math.inf)
        self.bucket_end = end
        oldest = bucket - RATE_BUCKETS
        for old in [b for b in self._buckets if b <= oldest]:
            calls, failures, slow = self._buckets.pop(old)
            totals[0] -= calls
            totals[1] -= failures
            totals[2] -= slow
        self.epoch += 1

    def _entry(self, bucket: int) -> list[int]:
        entry = self._buckets.get(bucket)
        if entry is None:
            entry = self._buckets[bucket] = [0, 0, 0]
        return entry

    def count_call(self, now: float, failed: bool, slow: bool) -> str | None:
        """Count one completed call that is not a fast success; the rate trigger now due, if any."""
        if self.bucket_of(now) != self.bucket:
            self.roll(now)
        entry, totals = self._entry(self.bucket), self.totals
        self.epoch += 1
        entry[0] += 1
        entry[1] += failed
        entry[2] += slow
        totals[0] += 1
        totals[1] += failed
        totals[2] += slow
        self.epoch += 1
        return rate_trip_due(self.policy, *self._live_counts())

    def closed_rate_failure(self, now: float, reason: str | BaseException, changes: list[Transition]) -> None:
        """A failure while closed under rate triggers alone, with no trial permit and no policy
        change to check (the owner holds the lock; ``record_failure``'s steps for this case):
        counted in the window, and the circuit opened if a rate trigger is now met."""
        self.last_failure = (reason, now)
        if now >= self.bucket_end:
            self.roll(now)
        failed = next(self.fail_counter) + 1 - self.fail_mark  # the bucket's failures, this one included
        if self.rate_may_be_due(failed):
            self.trip_rate_if_due(now, changes)

    def rate_may_be_due(self, failed: int) -> bool:
        """Could a rate trigger be due, with ``failed`` failures counted by ``fail_counter`` in the
        current bucket? A bound that leaves out the bucket's fast successes (they only add
        calls, which only lowers both rates) and needs ``minimum_calls`` calls. The owner holds
        the lock; ``LocalCircuit``'s failure path inlines it, read without the lock."""
        calls, failures, slow = self.totals
        calls = max(calls + failed, self.policy.minimum_calls)
        failure_rate, slow_rate = self.policy.failure_rate_threshold, self.policy.slow_call_rate_threshold
        return (failure_rate is not None and failures + failed >= failure_rate * calls) or (
            slow_rate is not None and slow >= slow_rate * calls
        )

    def check_counted_failure(
        self, now: float, reason: str | BaseException, policy_changed: bool, changes: list[Transition]
    ) -> None:
        """Check the triggers after a failure that ``fail_counter`` counted without the lock (the owner
        holds it now); ``policy_changed``: a policy set while it counted, whose count trigger
        (if it has one) counts the failure too."""
        if self.state is not CLOSED:
            return
        if policy_changed and self._max_failures and self.count_closed_failure(now, reason):
            self.trip_if_due(now, changes)
        if self.counts_calls:
            self.trip_rate_if_due(now, changes)

    def trip_rate_if_due(self, now: float, changes: list[Transition]) -> None:
        """Open if closed and a rate trigger is due at ``now`` (owner holds the lock)."""
        if self.state is CLOSED:
            trigger = rate_trip_due(self.policy, *self.window_counts(now))
            if trigger is not None:
                self._open(now, changes, trigger)

    def _live_counts(self) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the window as it stands (no roll): the settled
        totals and the current bucket's lock-free successes and failures."""
        calls, failures, slow = self.totals
        failed = counted(self.fail_counter) - self.fail_mark
        return calls + self._ok_count() + failed, failures + failed, slow

    def _ok_count(self) -> int:
        """The current bucket's fast successes. Read by advancing the counter (``next`` is
        one atomic step, ``counted`` parses a repr and costs ten times more) and taking the
        reads back; the owner holds the lock."""
        count = next(self.ok_counter) - self._ok_reads
        self._ok_reads += 1
        return count

    def window_counts(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the window ending at ``now``."""
        self.roll(now)
        return self._live_counts()

    def _clear_window(self) -> None:
        self.epoch += 1
        self._buckets = {}
        self.totals = [0, 0, 0]
        self.ok_counter, self.fail_counter = itertools.count(), itertools.count()
        self._ok_reads = self.fail_mark = 0
        self.epoch += 1

    # -- reads ---------------------------------------------------------------

    def failures_in_window(self, now: float) -> int:
        start = now - self.policy.window_seconds
        return sum(1 for t in self._failures if t > start)

    def failure_times(self) -> deque[float]:
        """``_failures`` as a deque, made at the first failure (once, also when failures
        race: they count without the owner's lock)."""
        with _first_failure:
            failures = self._failures
            if not isinstance(failures, deque):
                failures = self._failures = deque(maxlen=self._max_failures or 1)
            return failures

    def _forget_failures(self) -> None:
        if self._failures:
            self._failures.clear()  # type: ignore[union-attr]

    def retry_after(self, now: float) -> float | None:
        if self.state is FORCED_OPEN:
            return None
        if self.state is OPEN:
            return max(0.0, self.open_until - now)
        if self.state is HALF_OPEN and len(self._permits) >= self.policy.half_open_max_calls:
            return max(0.0, min(self._permits.values()) - now)
        return 0.0

    def available(self, now: float) -> bool:
        """Would a call be let through now? Takes no permit."""
        state = self.state
        if state is CLOSED or state is DISABLED:
            return True
        if state is OPEN:
            return now >= self.open_until
        if state is HALF_OPEN:
            live = sum(1 for deadline in self._permits.values() if deadline > now)
            return live < self.policy.half_open_max_calls
        return False

    def last_failure_at(self, now: float, wall: float | Callable[[], float]) -> dict[str, Any] | None:
        """``{"reason", "ts"}`` of the newest failure, ``ts`` in epoch seconds (``wall`` is now,
        or the wall clock, read only the first time a failure is read)."""
        return self.failure_record(self.last_failure, now, wall)

    def failure_record(
        self, last: tuple[str | BaseException, float] | None, now: float, wall: float | Callable[[], float]
    ) -> dict[str, Any] | None:
        """``last_failure_at`` for ``last``, a ``last_failure`` this model held (a rejection
        keeps the one it saw and reads it only if someone asks).

        ``ts`` is worked out from the two clocks once per failure and kept: every read of
        one failure gives the same ``ts`` (the failure path itself reads no wall clock).
        """
        if last is None:
            return None
        reason, at = last
        if not isinstance(reason, str):
            reason = exception_reason(reason)
            if self.last_failure is last:  # formatted once; the exception is let go
                self.last_failure = (reason, at)
        pinned = self._pinned_ts
        if pinned is None or pinned[0] != at:
            wall_now = wall() if callable(wall) else wall
            pinned = self._pinned_ts = (at, wall_now - (now - at))
        return {"reason": reason, "ts": pinned[1]}

    def figures(self, now: float) -> Figures:
        """(failures, calls, failure_rate, slow_call_rate) now: the frozen ones while open or
        half-open, the live window's otherwise (``failures`` is the count trigger's figure,
        or the rate window's failed calls without a count trigger)."""
        frozen = self._opened_figures
        if frozen is not None and self.opened_by is not None:
            return frozen
        calls = failure_rate = slow_rate = None
        failures = self.failures_in_window(now) if self._max_failures else 0
        if self.counts_calls:
            # Disabled records nothing (successes counted meanwhile are cleared by reset).
            calls, failed, slow = (0, 0, 0) if self.state is DISABLED else self.window_counts(now)
            failure_rate = failed / calls if calls else 0.0
            if self.policy.slow_call_rate_threshold is not None:
                slow_rate = slow / calls if calls else 0.0
            if not self._max_failures:
                failures = failed
        return failures, calls, failure_rate, slow_rate

    def snapshot(self, now: float, wall: float) -> CircuitSnapshot:
        failures, calls, failure_rate, slow_rate = self.figures(now)
        return CircuitSnapshot(
            service=self.service,
            state=self.state,
            failures=failures,
            max_failures=self.policy.max_failures,
            window_seconds=self.policy.window_seconds,
            retry_after=self.retry_after(now),
            last_failure=self.last_failure_at(now, wall),
            trials_in_flight=len(self._permits),
            reopenings=self.reopenings,
            calls=calls,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
            opened_by=self.opened_by,
        )

    # -- transitions ---------------------------------------------------------

    def _enter(self, state: CircuitState, changes: list[Transition]) -> None:
        if state is not self.state:
            changes.append((self.state, state))
            self.state = state

    def _open(self, now: float, changes: list[Transition], trigger: str) -> None:
        """Open because of ``trigger`` (one of ``OPENED_BY``): the figures that opened it are
        kept until it closes (a failed trial keeps the first opening's)."""
        if self._opened_figures is None:  # closed until now (else: the first opening's figures)
            self._opened_figures = self.figures(now)
        self.opened_by = trigger
        self.open_until = now + self.policy.open_duration(self.reopenings)
        self.dirty = False
        self._permits.clear()
        self._trial_successes = 0
        # Open first, then the window cleared: a failure counted without the lock that finds
        # the window cleared also finds the circuit open, and waits for the lock.
        self._enter(OPEN, changes)
        if self.counts_calls:
            self._clear_window()

    def _close(self, changes: list[Transition]) -> None:
        self.opened_by = None
        self._opened_figures = None
        self.open_until = 0.0
        self.dirty = False
        self._forget_failures()
        self._permits.clear()
        self._trial_successes = 0
        self.reopenings = 0
        if self.counts_calls:
            self._clear_window()
        self._enter(CLOSED, changes)

    def refresh(self, now: float, changes: list[Transition]) -> None:
        """Apply what the passing of time decides: open → half-open, stale permits expire."""
        if self.state is OPEN and now >= self.open_until:
            self._trial_successes = 0
            self._enter(HALF_OPEN, changes)
        elif self.state is HALF_OPEN and self._permits:
            for token in [t for t, deadline in self._permits.items() if deadline <= now]:
                del self._permits[token]

    def admit(self, now: float, changes: list[Transition]) -> int:
        """Decide a call: ``PASS``, ``REJECT``, or a positive trial permit token."""
        self.refresh(now, changes)
        state = self.state
        if state is CLOSED or state is DISABLED:
            return PASS
        if state is HALF_OPEN and len(self._permits) < self.policy.half_open_max_calls:
            self._next_token += 1
            if self._permits is _NO_PERMITS:
                self._permits = {}
            self._permits[self._next_token] = now + self.policy.trial_timeout_seconds
            return self._next_token
        return REJECT

    def release(self, token: int) -> None:
        """Give a trial permit back without an outcome (ignored exception, cancellation)."""
        if token > 0:
            self._permits.pop(token, None)

    def record_failure(
        self,
        now: float,
        reason: str | BaseException,
        token: int,
        changes: list[Transition],
        slow: bool = False,
        trip: bool = False,
    ) -> None:
        """Count a failure; ``trip``: it is one of the policy's ``open_on`` exceptions, which
        opens a closed or half-open circuit at once (counted first, for the figures)."""
        # The common case (closed, no permit) skips refresh and release.
        if self.state is not CLOSED:
            if self.state is DISABLED:
                return
            self.refresh(now, changes)
        if token:
            self.release(token)
        self.last_failure = (reason, now)
        state = self.state
        if state is CLOSED:
            self.recheck = False  # a failure checks the triggers anyway
            if self._max_failures and self.count_closed_failure(now, reason):
                self.trip_if_due(now, changes)
            if self.counts_calls and self.state is CLOSED:
                trigger = self.count_call(now, True, slow)
                if trigger is not None:
                    self._open(now, changes, trigger)
            if trip and self.state is CLOSED:
                self._open(now, changes, "open_on")
        elif state is HALF_OPEN:
            self.reopenings += 1
            self._open(now, changes, "open_on" if trip else "trial_failed")
        # OPEN / FORCED_OPEN: a late failure of a call admitted earlier changes nothing more.

    def count_closed_failure(self, now: float, reason: str | BaseException) -> bool:
        """The lock-free part of a failure while closed; True if the circuit may now trip.

        Safe without the owner's lock because each step is one atomic operation on a
        builtin (``deque.append`` with ``maxlen``, attribute stores): concurrent
        failures are all counted. The appends only make the kept times newer, so the
        caller whose append completes the threshold sees it, and then calls
        ``trip_if_due`` under the lock, which re-checks and opens at most once.
        """
        failures = self._failures
        if failures is NO_FAILURES:
            failures = self.failure_times()
        failures.append(now)  # type: ignore[union-attr]
        self.last_failure = (reason, now)
        if len(failures) == self._max_failures and failures[0] > now - self.window:
            return True
        self.dirty = True
        return False

    def exception_path(
        self,
        monotonic: Callable[[], float],
        handle: Any,
        listeners: Any,
        other: Callable[[int, BaseException], None],
        trip: Callable[[float, BaseException], None],
        counts: CallCounts,
        log_error: Callable[[], None],
    ) -> Callable[[int, BaseException], None]:
        """``count_closed_failure`` as one closure for the call path (one Python call per
        failure instead of three): a failure while ``handle`` shows closed, with no trial
        permit, no listener that wants per-call events and no rate trigger, keeps the
        exception as the reason (formatted when read), bumps ``counts.failure`` if anyone
        listens (metrics), and ``trip`` when the count may be due. Any other failure goes to
        ``other``. The hypothesis tests hold both paths to one reference. It never raises
        (``other`` neither): what goes wrong inside is handed to ``log_error``.
        """
        max_failures, window, model, closed = self._max_failures, self.window, self, CLOSED
        if self.counts_calls or not max_failures:
            # Under a rate trigger a failure is counted under the lock (see LocalCircuit).
            return other
        failures = self.failure_times()  # made now: this closure is made for failures
        failure_ticks: Iterator[int] | None = None  # the counter's, once metrics count

        def on_exception(token: int, exc: BaseException) -> None:
            nonlocal failure_ticks
            try:
                if token or handle.state is not closed:
                    other(token, exc)
                    return
                if listeners.callbacks:
                    if listeners.call_callbacks:
                        other(token, exc)
                        return
                    if failure_ticks is None:
                        failure_ticks = counts.failure.ticks
                    next(failure_ticks)
                now = monotonic()
                failures.append(now)
                model.last_failure = (exc, now)
                if len(failures) == max_failures and failures[0] > now - window:
                    trip(now, exc)
                    return
                if not handle.dirty:  # already marked: a success clears both after its own mark
                    model.dirty = True
                    if handle.state is closed:
                        handle.dirty = True
            except Exception:
                log_error()

        return on_exception

    def trip_if_due(self, now: float, changes: list[Transition]) -> None:
        """Open if closed with ``max_failures`` failures in the window (owner holds the lock)."""
        failures = self._failures
        if (
            self.state is CLOSED
            and len(failures) == (self._max_failures or 1)
            and failures[0] > now - self.policy.window_seconds
        ):
            self._open(now, changes, "failures")

    def _recheck(self, now: float, changes: list[Transition]) -> bool:
        """The first outcome after a policy change while closed: open if the new policy's
        triggers are already met (a lower threshold); True if it opened."""
        self.recheck = False
        if self._max_failures:  # (a policy without a count trigger has no count to meet)
            self.trip_if_due(now, changes)
        if self.counts_calls:
            self.trip_rate_if_due(now, changes)
        return self.state is not CLOSED

    def record_success(self, now: float, token: int, changes: list[Transition]) -> None:
        self.refresh(now, changes)
        self.release(token)
        state = self.state
        if state is CLOSED:
            if self.recheck and self._recheck(now, changes):
                return
            self.dirty = False  # before clear(): a failure counted concurrently re-marks it
            self._forget_failures()
            if self.counts_calls:
                self.roll(now)
                next(self.ok_counter)
        elif state is HALF_OPEN:
            self._trial_successes += 1
            if self._trial_successes >= self.policy.success_threshold:
                self._close(changes)

    def record_slow_success(self, now: float, token: int, changes: list[Transition]) -> None:
        """A call that succeeded but took longer than ``slow_call_seconds``.

        Closed: a success for the count trigger and a slow call for the rate window.
        Half-open: a failed trial (the service is not well yet).
        """
        self.refresh(now, changes)
        self.release(token)
        state = self.state
        if state is CLOSED:
            if self.recheck and self._recheck(now, changes):
                return
            self.dirty = False
            self._forget_failures()
            if self.counts_calls:
                trigger = self.count_call(now, False, True)
                if trigger is not None:
                    self._open(now, changes, trigger)
        elif state is HALF_OPEN:
            self.reopenings += 1
            self._open(now, changes, "trial_failed")

    def disable(self, now: float, reason: str, changes: list[Transition]) -> None:
        """Let every call through and record nothing until ``reset``."""
        self.opened_by = None
        self._opened_figures = None
        self.last_failure = (reason, now)
        self.open_until = 0.0
        self.dirty = False
        self._forget_failures()
        self._permits.clear()
        self._trial_successes = 0
        self.reopenings = 0
        if self.counts_calls:
            self._clear_window()
        self._enter(DISABLED, changes)

    def set_policy(self, policy: ServicePolicy, now: float) -> None:
        """Go on under ``policy``, keeping the state: failures counted so far stay (the newest
        ``max_failures`` of them), so a lower threshold already met opens the circuit at its
        next outcome (a success too); an open circuit keeps its deadline unless the new open
        time is shorter than what is left, then it is cut to it. A rate window whose buckets
        change width starts empty."""
        old = self.policy
        self.policy = policy
        if isinstance(self._failures, deque):  # (none yet: made at the first failure)
            self._failures = deque(self._failures, maxlen=policy.max_failures or 1)
        self._max_failures = policy.max_failures or 0
        self.window = policy.window_seconds
        if policy.counts_calls != old.counts_calls or policy.bucket_ms != old.bucket_ms:
            self.counts_calls = policy.counts_calls
            self.bucket_ms = policy.bucket_ms
            self._clear_window()
            self.bucket = -1
            self.bucket_end = -math.inf
            if self.counts_calls:  # the new bucket now: an outcome counted meanwhile lands in it
                self.roll(now)
        if self.state is OPEN:
            self.open_until = min(self.open_until, now + policy.open_duration(self.reopenings))
        elif self.state is CLOSED:
            self.recheck = self.dirty = True  # the next success takes the path that checks

    def hold_open(self, now: float, seconds: float) -> bool:
        """If open, stay open at least ``seconds`` from ``now`` (capped by ``max_open_seconds``,
        never shortened); True if the deadline moved. For a server's ``Retry-After``."""
        if self.state is not OPEN:
            return False
        cap = self.policy.max_open_seconds
        until = now + (seconds if cap is None else min(seconds, cap))
        if until <= self.open_until:
            return False
        self.open_until = until
        return True

    def force_open(self, now: float, reason: str, changes: list[Transition]) -> None:
        if self._opened_figures is None:
            self._opened_figures = self.figures(now)
        self.opened_by = "operator"
        self.last_failure = (reason, now)
        self.open_until = math.inf
        self.dirty = False
        self._permits.clear()
        if self.counts_calls:
            self._clear_window()
        self._enter(FORCED_OPEN, changes)

    def reset(self, changes: list[Transition]) -> None:
        self._close(changes)

    def assume(
        self,
        state: CircuitState,
        open_until: float,
        reopenings: int,
        last_failure: tuple[str, float] | None,
        opened: tuple[str | None, Figures | None] = (None, None),
    ) -> None:
        """Take over a state decided elsewhere: a shared store's last known view, when this
        process must go on deciding alone (``open_until`` is monotonic; failures start at 0;
        ``opened``: why it opened and the figures that did, if known)."""
        self.opened_by, self._opened_figures = (
            opened if state in (OPEN, HALF_OPEN, FORCED_OPEN) else (None, None)
        )
        self._forget_failures()
        self._permits.clear()
        self._trial_successes = 0
        self.dirty = False
        self.reopenings = reopenings
        self.state = state
        if self.counts_calls:
            self._clear_window()
        self.open_until = math.inf if state is FORCED_OPEN else open_until if state is OPEN else 0.0
        if last_failure is not None:
            self.last_failure = last_failure
