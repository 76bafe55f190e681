"""The in-process backend: state in memory, one short lock per service.

Thread-safe and asyncio-safe: the lock guards only the few field updates of a
transition and is never held while a protected function runs or across an
``await``. A healthy call (closed, nothing to reset) takes no lock at all. It writes
no files and opens no sockets.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .._counter import AtomicCounter, CallCounts
from .._validate import exception_reason
from ..clock import Clock
from ..events import EventKind, ListenerList
from ..exceptions import _DEFERRED, CircuitOpenError, _deferred_open_error
from ..policies import ServicePolicy
from ..state import (
    CLOSED,
    DISABLED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    PASS,
    REJECT,
    CircuitModel,
    CircuitSnapshot,
    CircuitState,
    Figures,
    Transition,
)
from .base import log_record_error

__all__ = ["LocalBackend"]


def _report_rejection(circuit: Any, listeners: ListenerList, fallback: bool, observed: bool) -> None:
    """Count a rejected call (or, in observe mode, one that would have been) and tell listeners.

    Shared by every circuit handle (the Redis one imports it); the caller has checked that
    someone listens.
    """
    counts = circuit.counts
    if observed:
        counts.would_reject.increment()
        kind = EventKind.WOULD_REJECT
    elif fallback:
        counts.fallback.increment()
        kind = EventKind.FALLBACK
    else:
        counts.rejected.increment()
        kind = EventKind.REJECTED
    if listeners.call_callbacks:
        circuit._notify(kind, [])


def _rebind_watchers(circuit: Any) -> None:
    """Bind every live wrapper of ``circuit`` again to its policy (after ``set_policy``)."""
    for bind in list(circuit.policy_watchers.values()):
        bind()


class LocalCircuit:
    """A service's circuit owned by this process."""

    io_free = True
    """Nothing here does I/O: async callers may use the sync methods directly."""
    on_exception_never_raises = True
    """``on_exception`` logs what goes wrong inside it (see ``CircuitHandle.on_exception``)."""

    __slots__ = (
        "_clock",
        "_count_fast",
        "_listeners",
        "_lock",
        "_model",
        "_monotonic",
        "_on_exception",
        "_policy_watchers",
        "counts",
        "dirty",
        "monotonic",
        "observe",
        "open_until",
        "policy",
        "service",
        "slow_after",
        "state",
        "tally",
        "window",
    )

    def __init__(self, service: str, policy: ServicePolicy, clock: Clock, listeners: ListenerList) -> None:
        self.service = service
        self.policy = policy
        self.state: CircuitState = CLOSED
        self.dirty = False
        self.open_until = 0.0
        self._model = CircuitModel(service, policy)
        self._clock = clock
        self._monotonic = clock.monotonic  # bound once: the failure path reads it per call
        self.monotonic = clock.monotonic
        """The clock slow calls are timed with."""
        self._listeners = listeners
        self._lock = threading.Lock()
        self.counts = CallCounts()
        """Outcomes seen while a listener was registered (for metrics)."""
        self._on_exception: Callable[[int, BaseException], None] | None = None
        self._policy_watchers: weakref.WeakKeyDictionary[Callable[..., Any], Callable[[], None]] | None = None
        self._bind_policy()

    @property
    def policy_watchers(self) -> weakref.WeakKeyDictionary[Callable[..., Any], Callable[[], None]]:
        """Wrappers made by ``protect`` and how to bind each again when the policy changes
        (made with the first wrapper: a circuit only ``execute`` uses holds none)."""
        watchers = self._policy_watchers
        if watchers is None:
            with self._lock:
                watchers = self._policy_watchers
                if watchers is None:
                    watchers = self._policy_watchers = weakref.WeakKeyDictionary()
        return watchers

    def _bind_policy(self) -> None:
        """Derive from ``policy`` what the call path reads as plain attributes."""
        policy = self.policy
        self.observe = policy.mode == "observe"
        """Observe mode: a call the circuit would reject runs anyway (and is not recorded)."""
        self.slow_after = policy.slow_call_seconds
        """Calls are timed only when this is set (a slow-call policy)."""
        # A failure under a rate trigger takes the lock: counted without it, the calls of other
        # threads were let through while the thread that opens the circuit waited for the CPU.
        self._count_fast = bool(policy.max_failures) and not policy.counts_calls
        """A closed failure is counted without the lock (count trigger, rate trigger, or both)."""
        self.tally = self._make_tally() if policy.counts_calls else None
        """What a fast success while closed, with nothing else to record, must still do."""
        self.window = self._model if policy.counts_calls else None
        self._on_exception = None  # made again, for this policy, at its next use

    @property
    def successes(self) -> AtomicCounter:
        return self.counts.success

    @property
    def on_exception(self) -> Callable[[int, BaseException], None]:
        """A failure whose reason is the exception's: the common one takes no lock, and the
        reason is formatted only when someone reads the last failure. Made at first use
        (``protect`` reads it once; an idle circuit holds none)."""
        on_exception = self._on_exception
        if on_exception is None:
            if self.policy.counts_calls and not self.policy.max_failures:
                on_exception = self._on_exception = self._rate_exception_path()
            else:
                on_exception = self._on_exception = self._model.exception_path(
                    self._monotonic,
                    self,
                    self._listeners,
                    self._failure_of,
                    self._trip,
                    self.counts,
                    functools.partial(log_record_error, self.service),
                )
        return on_exception

    def _rate_exception_path(self) -> Callable[[int, BaseException], None]:
        """``on_exception`` under rate triggers alone: a failure while closed, with no trial
        permit and no listener that wants per-call events, keeps the exception as the reason.

        Under a failure-rate trigger alone it is counted without the lock (``CircuitModel.fail_counter``,
        one atomic step), and the lock is taken only when the counts read without it say the
        rate may be due (``rate_may_be_due``'s bound, inlined), or were read while the owner
        changed them (``CircuitModel.epoch``), to check exactly and open; or to start a new
        bucket. Each failure reads the counts after its own, so the one that makes the rate due
        sees it and opens the circuit (once, under the lock) before its thread calls again; and
        a failure that finds the circuit opened but not yet published (``_publish``) waits for
        the lock, so that other threads' calls do not run on while the opening thread waits for
        the CPU.
        Under a slow-call rate trigger it is counted under the lock: a failure adds no slow
        call, but it can bring the calls up to ``minimum_calls``. Any other failure goes to
        ``_failure_of``.
        """
        model, monotonic, listeners, policy = self._model, self._monotonic, self._listeners, self.policy
        # (acquire and release in try/finally: on CPython 3.11 ``with`` costs twice as much)
        acquire, release = self._lock.acquire, self._lock.release
        other, counts, closed, service = self._failure_of, self.counts, CLOSED, self.service
        failure_ticks: Iterator[int] | None = None  # the counter's, once metrics count
        rate = policy.failure_rate_threshold
        lock_free = rate is not None and policy.slow_call_rate_threshold is None
        failure_rate = rate or 0.0
        floor = failure_rate * policy.minimum_calls  # fewer failures than this meet no rate

        def on_exception(token: int, exc: BaseException) -> None:
            nonlocal failure_ticks
            try:
                if token or self.state is not closed or listeners.call_callbacks:
                    other(token, exc)
                    return
                if listeners.callbacks:
                    if failure_ticks is None:
                        failure_ticks = counts.failure.ticks
                    next(failure_ticks)
                counted = False  # by ``fail``, without the lock: then only checked under it
                if lock_free:
                    now = monotonic()
                    if now < model.bucket_end and not model.recheck and model.policy is policy:
                        epoch = model.epoch
                        # the bucket's failures, this one included
                        failed = next(model.fail_counter) + 1 - model.fail_mark
                        model.last_failure = (exc, now)
                        totals = model.totals
                        failures = totals[1] + failed
                        if (
                            (failures < floor or failures < failure_rate * (totals[0] + failed))
                            and model.epoch == epoch
                            and not epoch & 1
                            and model.policy is policy  # (read last: a change made while it counted)
                            and model.state is closed  # (opened, but not yet published: wait for it)
                        ):
                            return  # no rate can be due: the bucket's fast successes only add calls
                        counted = True
                changes: list[Transition] = []
                acquire()
                try:
                    now = monotonic()
                    if counted:
                        model.check_counted_failure(now, exc, model.policy is not policy, changes)
                    elif model.state is not closed or model.recheck or model.policy is not policy:
                        model.record_failure(now, exc, 0, changes)
                    else:
                        model.closed_rate_failure(now, exc, changes)
                    self._publish()
                finally:
                    release()
                if changes:
                    self._notify(EventKind.FAILURE, changes, exception_reason(exc))
            except Exception:  # (never raises: see ``CircuitHandle.on_exception``)
                log_record_error(service)

        return on_exception

    def set_policy(self, policy: ServicePolicy) -> None:
        """Govern this circuit by ``policy`` from now on, keeping its state (see
        ``CircuitModel.set_policy``); wrappers made earlier see it at their next call."""
        with self._lock:
            self._model.set_policy(policy, self._monotonic())
            self.policy = policy
            self._bind_policy()
            self._publish()
        _rebind_watchers(self)

    def __repr__(self) -> str:
        return f"<LocalCircuit {self.service!r} {self.state.value}>"

    def _publish(self) -> None:
        # Copy the model's hot fields for the lock-free reads of the call path.
        model = self._model
        self.state = model.state
        self.dirty = model.dirty
        self.open_until = model.open_until

    def _notify(self, kind: EventKind | None, changes: list[Transition], reason: str | None = None) -> None:
        self._listeners.notify(
            kind, self.service, self.state, changes, self._clock.time, reason, self._model.opened_by
        )

    # -- the call path ---------------------------------------------------------

    def _make_tally(self) -> Callable[[], None]:
        """Count a fast success in the rate window: lock-free unless a new bucket starts.
        (``protect`` inlines the same steps through ``window`` and ``roll_window``.)"""
        model, monotonic, roll = self._model, self._monotonic, self.roll_window

        def tally() -> None:
            if monotonic() >= model.bucket_end:
                roll()
            next(model.ok_counter)

        return tally

    def roll_window(self) -> None:
        with self._lock:
            self._model.roll(self._monotonic())

    def acquire(self) -> int:
        # Open (or forced open) with the deadline ahead: reject without the lock.
        if self.state is not HALF_OPEN and self._monotonic() < self.open_until:
            return REJECT
        if self.state is DISABLED:
            return PASS
        changes: list[Transition] = []
        with self._lock:
            token = self._model.admit(self._monotonic(), changes)
            self._publish()
        if changes:
            self._notify(None, changes)
        return token

    def _disabled_call(self) -> None:
        """A call through a disabled circuit: no event, no record, counted under its own outcome."""
        if self._listeners.callbacks:
            self.counts.disabled.increment()

    def on_success(self, token: int) -> None:
        if self.state is DISABLED:
            self._disabled_call()
            return
        if self._listeners.callbacks:
            self.counts.success.increment()
        if not token and not self.dirty and self.state is CLOSED:
            if self.tally is not None:
                self.tally()
            if self._listeners.success_callbacks:
                self._notify(EventKind.SUCCESS, [])
            return
        changes: list[Transition] = []
        with self._lock:
            self._model.record_success(self._monotonic(), token, changes)
            self._publish()
        if changes or self._listeners.callbacks:
            self._notify(EventKind.SUCCESS, changes)

    def on_failure(self, token: int, reason: str, slow: bool = False, trip: bool = False) -> None:
        if self.state is DISABLED:
            self._disabled_call()
            return
        model = self._model
        listening = self._listeners.callbacks
        if listening:
            self.counts.failure.increment()
        if not token and self.state is CLOSED and self._count_fast and not trip:
            # The common failure under a count trigger: counted without the lock; the lock
            # only to trip.
            changes: list[Transition] = []
            now = self._monotonic()
            if model.count_closed_failure(now, reason):
                with self._lock:
                    model.trip_if_due(now, changes)
                    self._publish()
            elif self.state is CLOSED:
                self.dirty = True
        else:
            changes = []
            with self._lock:
                model.record_failure(self._monotonic(), reason, token, changes, slow, trip)
                self._publish()
        if changes or listening:
            self._notify(EventKind.FAILURE, changes, reason)

    def _failure_of(self, token: int, exc: BaseException) -> None:
        """``on_exception`` off its fast paths (never raises: see ``CircuitHandle.on_exception``)."""
        try:
            if self._listeners.callbacks or self.state is DISABLED:
                self.on_failure(token, exception_reason(exc))
                return
            # Nobody listens: the reason stays the exception until someone reads it.
            changes: list[Transition] = []
            with self._lock:
                self._model.record_failure(self._monotonic(), exc, token, changes)
                self._publish()
            if changes:
                self._notify(EventKind.FAILURE, changes, exception_reason(exc))
        except Exception:
            log_record_error(self.service)

    def _trip(self, now: float, exc: BaseException) -> None:
        changes: list[Transition] = []
        with self._lock:
            self._model.trip_if_due(now, changes)
            self._publish()
        if changes:
            self._notify(EventKind.FAILURE, changes, exception_reason(exc))

    def on_slow_success(self, token: int) -> None:
        """A success that took longer than ``slow_call_seconds``."""
        if self.state is DISABLED:
            self._disabled_call()
            return
        if self._listeners.callbacks:
            self.counts.success.increment()
        changes: list[Transition] = []
        with self._lock:
            self._model.record_slow_success(self._monotonic(), token, changes)
            self._publish()
        if changes or self._listeners.callbacks:
            self._notify(EventKind.SUCCESS, changes)

    def on_ignored(self, token: int) -> None:
        self.on_release(token)
        if self.state is DISABLED:
            self._disabled_call()
        elif self._listeners.callbacks:
            self.counts.ignored.increment()
            self._notify(EventKind.IGNORED, [])

    def on_release(self, token: int) -> None:
        if token > 0:
            with self._lock:
                self._model.release(token)

    def on_rejected(self, fallback: bool, observed: bool = False) -> None:
        if self._listeners.callbacks:
            _report_rejection(self, self._listeners, fallback, observed)

    async def aon_slow_success(self, token: int) -> None:
        self.on_slow_success(token)

    async def aacquire(self) -> int:
        return self.acquire()

    async def aon_success(self, token: int) -> None:
        self.on_success(token)

    async def aon_failure(self, token: int, reason: str, slow: bool = False, trip: bool = False) -> None:
        self.on_failure(token, reason, slow, trip)

    async def aon_ignored(self, token: int) -> None:
        self.on_ignored(token)

    # -- inspection and manual control -----------------------------------------

    def _refreshed(self) -> list[Transition]:
        changes: list[Transition] = []
        self._model.refresh(self._monotonic(), changes)
        self._publish()
        return changes

    def is_available(self) -> bool:
        if self.state is CLOSED or self.state is DISABLED:
            return True
        with self._lock:
            changes = self._refreshed()
            available = self._model.available(self._monotonic())
        if changes:
            self._notify(None, changes)
        return available

    async def ais_available(self) -> bool:
        return self.is_available()

    async def asnapshot(self) -> CircuitSnapshot:
        return self.snapshot()

    def snapshot(self) -> CircuitSnapshot:
        with self._lock:
            changes = self._refreshed()
            snap = self._model.snapshot(self._monotonic(), self._clock.time())
        if changes:
            self._notify(None, changes)
        return snap

    def open_error(self) -> CircuitOpenError:
        # Built on every rejection: plain reads, no lock (a slightly stale view is fine), and
        # nothing worked out until someone reads the error (``_open_error_fields``).
        model = self._model
        now = self._monotonic()
        state, opened_by, figures = model.state, model.opened_by, model._opened_figures
        if state is HALF_OPEN or (opened_by is not None and figures is None):
            return self._open_error_now(now)  # rare: every trial permit taken, or assumed
        return _deferred_open_error(
            self.service,
            _DEFERRED,
            _open_error_fields,
            (self, state, model.open_until, now, model.last_failure, opened_by, figures, self.policy),
        )

    def _open_error_now(self, now: float) -> CircuitOpenError:
        model = self._model
        with self._lock:  # the figures roll the rate window
            figures = model.figures(now) if model.opened_by else None
        return _deferred_open_error(
            self.service,
            _DEFERRED,
            _open_error_fields,
            (
                self,
                model.state,
                model.retry_after(now),
                now,
                model.last_failure,
                model.opened_by,
                figures,
                self.policy,
            ),
        )

    def last_failure(self) -> dict[str, Any] | None:
        return self._model.last_failure_at(self._monotonic(), self._clock.time())

    def hold_open(self, seconds: float) -> None:
        with self._lock:
            self._model.hold_open(self._monotonic(), seconds)
            self._publish()

    async def ahold_open(self, seconds: float) -> None:
        self.hold_open(seconds)

    def force_open(self, reason: str) -> None:
        changes: list[Transition] = []
        with self._lock:
            self._model.force_open(self._monotonic(), reason, changes)
            self._publish()
        self._notify(None, changes, reason)

    def disable(self, reason: str) -> None:
        changes: list[Transition] = []
        with self._lock:
            self._model.disable(self._monotonic(), reason, changes)
            self._publish()
        self._notify(None, changes, reason)

    def reset(self) -> None:
        changes: list[Transition] = []
        with self._lock:
            self._model.reset(changes)
            self._publish()
        self._notify(None, changes)

    def assume(
        self,
        state: CircuitState,
        open_until: float,
        reopenings: int,
        last_failure: tuple[str, float] | None,
        opened: tuple[str | None, Figures | None] = (None, None),
    ) -> None:
        """Start from a state decided elsewhere (see ``CircuitModel.assume``); no event."""
        with self._lock:
            self._model.assume(state, open_until, reopenings, last_failure, opened)
            self._publish()


def _open_error_fields(service: str, capture: tuple[Any, ...]) -> tuple[Any, ...]:
    """A rejection's ``CircuitOpenError`` fields, worked out when first read from what
    ``LocalCircuit.open_error`` kept: (circuit, state, open_until (half-open: retry_after),
    monotonic now, last_failure, opened_by, the figures that opened it, policy)."""
    circuit, state, until, now, last, opened_by, figures, policy = capture
    if state is FORCED_OPEN:
        retry_after = None
    elif state is OPEN:
        retry_after = max(0.0, until - now)
    else:
        retry_after = until
    failures, calls, failure_rate, slow_rate = figures if opened_by else (0, None, None, None)
    return (
        service,
        retry_after,
        circuit._model.failure_record(last, circuit._monotonic(), circuit._clock.time),
        state,
        failures,
        policy.max_failures or 0,
        policy.window_seconds,
        opened_by,
        calls,
        failure_rate,
        slow_rate,
    )


_logger = logging.getLogger("tnm.circuit")


def _say_deciding_alone(policy: ServicePolicy, why: str) -> bool:
    """Log once (the caller keeps the flag) that a quorum cannot be formed: True if it logged."""
    if policy.min_failing_processes <= 1:
        return False
    _logger.info(
        "tnm-circuit: %s, so each process decides alone, as with min_failing_processes=1"
        " (the policy asks for %d)",
        why,
        policy.min_failing_processes,
    )
    return True


class LocalBackend:
    """Circuits in this process's memory (the default backend)."""

    name = "local"

    def __init__(self) -> None:
        self._circuits: dict[str, LocalCircuit] = {}
        self._lock = threading.Lock()
        self._said_alone = False

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
                    if not self._said_alone:
                        self._said_alone = _say_deciding_alone(policy, "the local backend is one process")
        return circuit

    def services(self) -> list[str]:
        """The services with a circuit in this process."""
        return sorted(self._circuits)

    def describe(self) -> str:
        """``"this process"``: the local backend shares nothing."""
        return "this process"

    def forget(self, service: str, circuit: LocalCircuit) -> None:
        """Drop an idle circuit (the breaker only hands over closed ones with no failures)."""
        with self._lock:
            if self._circuits.get(service) is circuit:
                del self._circuits[service]

    def initialize(self) -> None:
        """Nothing to connect to."""

    def close(self) -> None:
        """Nothing to release; circuits stay in memory for the breaker's lifetime."""

    async def ainitialize(self) -> None:
        self.initialize()

    async def aclose(self) -> None:
        self.close()
