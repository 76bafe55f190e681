"""One service's circuit on the Redis backend: a mirror in memory, the truth in Redis.

The call path reads only ``state``, ``dirty`` and ``open_until``. ``open_until`` is
the monotonic time before which a call is rejected without asking Redis: the open
deadline, infinity while forced open, or, in half-open with every trial permit taken,
the earliest permit's deadline. So healthy calls and rejections make no round trip; a
failure, a trial and a first call make one.

A new handle is *cold*: it does not know the shared state yet, so it says ``OPEN``
with no deadline and the first call asks Redis (one script run that also decides that
call) instead of assuming a closed circuit.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..._counter import AtomicCounter, CallCounts
from ..._validate import exception_reason
from ...events import EventKind
from ...exceptions import CircuitBackendError, CircuitError, CircuitOpenError, _chain_masked
from ...policies import RATE_BUCKETS, ServicePolicy
from ...state import (
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
from ..local import LocalCircuit, _rebind_watchers, _report_rejection
from ._buckets import calls_key, flusher_for
from ._clients import STORAGE_ERRORS
from ._keys import DISABLED_MARK
from ._script import BadReply, Reply, aeval, eval_script

if TYPE_CHECKING:
    from ._backend import RedisBackend

__all__ = ["RedisCircuit"]

_MS = 1000.0
_STORE_FAILED: tuple[type[Exception], ...] = (*STORAGE_ERRORS, CircuitBackendError)
_CARRY = frozenset({"failure", "slow"})
"""Operations that add the process's unsent successes to the rate window first."""


class RedisCircuit:
    """A service's circuit stored in Redis, mirrored in this process."""

    io_free = False

    def __init__(self, backend: RedisBackend, service: str, policy: ServicePolicy) -> None:
        self.service = service
        self.policy = policy
        self.state: CircuitState = OPEN  # cold: the first call asks Redis
        self.dirty = False
        self.open_until = 0.0
        self.cold = True
        self._backend = backend
        self._health = backend.health
        self._clock = backend.clock
        self._monotonic = backend.clock.monotonic
        self.monotonic = backend.clock.monotonic
        """The clock slow calls are timed with."""
        self._listeners = backend.listeners
        base = backend.keys.for_service(service, cluster=True)  # state, failures, permits
        # Then the rate buckets, and (one server only) the namespace's change counter.
        changes = () if backend.cluster else (backend.keys.changes,)
        self.keys: tuple[str, ...] = (*base, calls_key(base[0]), *changes)
        self._args: list[Any] = []
        self._rate_args: list[Any] = []
        self.bucket_ms = self.window_ms = 0
        self.observe = False
        self.slow_after: float | None = None
        self.tally: Callable[[], None] | None = None
        self._derive_from_policy()
        self._window: tuple[int, int, int] = (0, 0, 0)  # calls, failures, slow calls (last reply)
        self._opened: tuple[str | None, tuple[int, int, int, int] | None] = (None, None)
        """Why the circuit opened and (failures, calls, failed, slow) that did (last reply)."""
        self._seen: tuple[float, int] = (-math.inf, 0)  # (server ms, version) of the newest news
        self._last: tuple[str, float] | None = None  # (reason, server ms)
        self._failures = 0
        self._reopenings = 0
        self._permits = 0
        self._good: tuple[str, str] = ("", "")  # last valid (state, open_until ms): repairs start there
        self._news_lock = threading.Lock()
        self._shown_max_failures = policy.max_failures
        self._shown_window = policy.window_seconds
        self.counts = CallCounts()
        """Outcomes seen while a listener was registered (for metrics)."""
        self.successes = self.counts.success
        self.fallback = LocalCircuit(service, policy, backend.clock, backend.listeners)
        """Decides calls while Redis is unreachable: same policy, this process only."""
        self.pending = AtomicCounter()
        """Fast successes counted here for the rate triggers; ``flushed`` of them are in Redis."""
        self.flushed = 0
        self._pending_lock = threading.Lock()
        self.window: CircuitModel | None = None  # successes go through tally (counted, flushed)
        self.policy_watchers: weakref.WeakKeyDictionary[Callable[..., Any], Callable[[], None]] = (
            weakref.WeakKeyDictionary()
        )
        """Wrappers made by ``protect`` and how to bind each again when the policy changes."""
        self._flushed_by: object = None
        self._bind_tally()

    def _derive_from_policy(self) -> None:
        """What the script is given and the call path reads, derived from ``policy``."""
        policy, backend = self.policy, self._backend
        self._args = [
            policy.max_failures or 0,
            int(policy.window_seconds * _MS),
            int(policy.open_seconds * _MS),  # type: ignore[operator]
            policy.backoff_multiplier,
            int(policy.max_open_seconds * _MS),  # type: ignore[operator]
            policy.half_open_max_calls,
            policy.success_threshold,
            int(policy.trial_timeout_seconds * _MS),
            int(backend.meta_ttl_seconds * _MS),
            backend.keys.channel,
            self.service,
        ]
        rate, slow_rate = policy.failure_rate_threshold, policy.slow_call_rate_threshold
        self._rate_args = [
            "" if rate is None else repr(rate),
            "" if slow_rate is None else repr(slow_rate),
            policy.minimum_calls,
            policy.bucket_ms,
            RATE_BUCKETS,
        ]
        self.bucket_ms = policy.bucket_ms
        self.window_ms = int(policy.window_seconds * _MS)
        self.observe = policy.mode == "observe"
        self.slow_after = policy.slow_call_seconds

    def _bind_tally(self) -> None:
        self.tally = self._tally if self.policy.counts_calls else None
        if self.policy.counts_calls and self._flushed_by is None:
            self._flushed_by = flusher = flusher_for(self._backend)
            flusher.register(self)

    def set_policy(self, policy: ServicePolicy) -> None:
        """Decide this process's calls by ``policy`` from now on: the script is given its figures
        from the next round trip (which re-evaluates the shared state under them), and the
        fallback that decides alone during an outage takes it too."""
        with self._news_lock:
            self.policy = policy
            self._derive_from_policy()
            self._bind_tally()
        self.fallback.set_policy(policy)
        _rebind_watchers(self)

    def __repr__(self) -> str:
        return f"<RedisCircuit {self.service!r} {'cold' if self.cold else self.state.value}>"

    # -- the mirror ---------------------------------------------------------------

    def script_args(
        self,
        op: str,
        token: int = 0,
        reason: str = "",
        slow: bool = False,
        successes: int = 0,
        trip: bool = False,
    ) -> list[Any]:
        return [
            op,
            self._backend.now_arg(),
            *self._args,
            token,
            reason,
            *self._good,
            *self._rate_args,
            "1" if slow else "0",
            successes,
            "1" if trip else "0",
        ]

    def roll_window(self) -> None:
        """Unused: ``window`` is ``None`` (the rate window lives in Redis)."""

    def take_pending(self) -> int:
        """Successes counted here and not yet sent; they now count as sent."""
        with self._pending_lock:
            total = self.pending.value
            taken = total - self.flushed
            self.flushed = total
            return taken

    def give_back(self, successes: int) -> None:
        """Successes that could not be sent: the next flush or failure sends them."""
        if successes:
            with self._pending_lock:
                self.flushed -= successes

    def _tally(self) -> None:
        """A fast success while closed: counted in memory, added to Redis in the background."""
        self.pending.increment()
        if self._health.degraded and self.fallback.tally is not None:
            self.fallback.tally()  # deciding alone meanwhile: the local window counts it too

    def mirror(
        self,
        state: CircuitState,
        open_until_ms: float,
        failures: int,
        now_ms: float,
        permits: int,
        earliest_permit_ms: float | None,
        version: int,
    ) -> bool:
        """Update the mirror from a script reply or a published notice (newest wins).

        Returns False (and changes nothing) for news older than what the mirror holds.
        The listener, the refresher and callers may bring news at once: the check and
        the writes are one step under the circuit's news lock (never taken on the call
        path's reads).
        """
        with self._news_lock:
            seen = (now_ms, version)
            if seen < self._seen:
                return False
            self._seen = seen
            self._write(state, open_until_ms, failures, now_ms, permits, earliest_permit_ms)
            return True

    def _write(
        self,
        state: CircuitState,
        open_until_ms: float,
        failures: int,
        now_ms: float,
        permits: int,
        earliest_permit_ms: float | None,
    ) -> None:
        self._good = (state.value, str(int(open_until_ms)))
        self._failures = failures
        self._permits = permits
        if state is OPEN:
            open_until = self._backend.to_monotonic(open_until_ms, now_ms)
        elif state is FORCED_OPEN:
            open_until = math.inf
        elif state is HALF_OPEN and permits >= self.policy.half_open_max_calls and earliest_permit_ms:
            open_until = self._backend.to_monotonic(earliest_permit_ms, now_ms)
        else:
            open_until = 0.0
        self.dirty = state is CLOSED and failures > 0
        self.open_until = open_until
        self.state = state
        self.cold = False

    def apply(self, reply: Reply) -> tuple[int, list[Transition]]:
        """Mirror a script's reply; return its result and the transitions it made.

        Transitions come from the script itself (not from comparing mirrors), so the
        process that caused a change reports it exactly once, even if the published
        notice of that change reached the mirror first.
        """
        self._backend.saw_server_time(reply.now_ms)
        accepted = self.mirror(
            reply.state,
            reply.open_until_ms,
            reply.failures,
            reply.now_ms,
            reply.permits,
            reply.earliest_permit_ms,
            reply.version,
        )
        if accepted:
            self._reopenings = reply.reopenings
            self._last = reply.last
            self._shown_max_failures = reply.max_failures
            self._shown_window = reply.window_seconds
            self._window = (reply.calls, reply.window_failures, reply.slow_calls)
            self._opened = (reply.opened_by, reply.opened_figures)
        if reply.repaired:
            self._health.bad_data(
                self.service, "stored state was unreadable; rewritten from the last good one"
            )
        return reply.result, list(itertools.pairwise(reply.path))

    def last_known_reason(self) -> str | None:
        return None if self._last is None else self._last[0]

    def rejoin(self) -> None:
        """The store is back: a circuit never read (first used during the outage) asks it next."""
        if self.cold:
            self.state, self.dirty, self.open_until = OPEN, False, 0.0

    def start_alone(self) -> None:
        """The store is gone: the per-process circuit starts from the last shared state (or,
        for a circuit never read, from the fleet's forced-open registry)."""
        if self.cold:
            decision = self._backend.refresher.forced.get(self.service)
            if decision is not None and not decision.startswith(DISABLED_MARK):
                self.fallback.assume(FORCED_OPEN, math.inf, 0, None)
        else:
            now = self._monotonic()
            open_until = self.open_until if self.state is OPEN else 0.0
            last = None
            if self._last is not None:
                age = max(0.0, (self._backend.server_ms_now() - self._last[1]) / _MS)
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

    def _notify(self, kind: EventKind | None, changes: list[Transition], reason: str | None = None) -> None:
        self._listeners.notify(
            kind, self.service, self.state, changes, self._clock.time, reason, self._opened[0]
        )

    # -- one operation, sync and async -------------------------------------------------

    def _finish(self, raw: Any, op: str, reason: str, kind: EventKind | None) -> int | None:
        try:
            result, changes = self.apply(Reply.parse(raw))
        except BadReply as exc:
            self._health.bad_data(self.service, str(exc))
            return None
        if op == "read":
            changes = []  # a read stores nothing; the next write makes (and reports) the change
        if changes or kind is not None:
            self._notify(kind, changes, reason or None)
        return result

    def _op(self, op: str) -> str:
        # A process's first read of a circuit also lists it as in use (for status and
        # operators), as its first call would.
        return "touch" if op == "read" and self.cold else op

    def run(
        self,
        op: str,
        token: int = 0,
        reason: str = "",
        kind: EventKind | None = None,
        slow: bool = False,
        trip: bool = False,
    ) -> int | None:
        """Run ``op`` in Redis; ``None`` if the store could not decide (the caller falls back)."""
        if self._health.degraded:
            return None
        self._backend.start_threads()
        # A failure or slow call carries this process's unsent successes (no extra trip).
        successes = self.take_pending() if self.tally is not None and op in _CARRY else 0
        try:
            raw = eval_script(
                self._backend.client(),
                self.keys,
                self.script_args(self._op(op), token, reason, slow, successes, trip),
            )
        except _STORE_FAILED as exc:
            self.give_back(successes)
            self._backend.storage_failed(exc)
            return None
        return self._finish(raw, op, reason, kind)

    async def arun(
        self,
        op: str,
        token: int = 0,
        reason: str = "",
        kind: EventKind | None = None,
        slow: bool = False,
        trip: bool = False,
    ) -> int | None:
        if self._health.degraded:
            return None
        self._backend.start_threads()
        successes = self.take_pending() if self.tally is not None and op in _CARRY else 0
        try:
            client = self._backend.aclient()
            raw = await aeval(
                client, self.keys, self.script_args(self._op(op), token, reason, slow, successes, trip)
            )
        except _STORE_FAILED as exc:
            self.give_back(successes)
            self._backend.storage_failed(exc)
            return None
        return self._finish(raw, op, reason, kind)

    def _alone_acquire(self) -> int:
        if self._health.on_storage_error != "local":
            return REJECT
        token = self.fallback.acquire()
        self.copy_fallback()
        return token

    # -- the call path --------------------------------------------------------------------

    def acquire(self) -> int:
        if self._monotonic() < self.open_until:
            return REJECT  # open, forced open, or every trial permit taken: known locally
        if self.state is DISABLED:
            return PASS
        token = self.run("acquire")
        return self._alone_acquire() if token is None else token

    async def aacquire(self) -> int:
        if self._monotonic() < self.open_until:
            return REJECT
        if self.state is DISABLED:
            return PASS
        if self._health.degraded:
            return self._alone_acquire()
        # Shielded: if the caller is cancelled while the reply is in flight, a permit the
        # reply grants is handed back as soon as it lands (else it would be held until
        # its deadline, rejecting every process's trials meanwhile).
        pending = asyncio.ensure_future(self.arun("acquire"))
        try:
            token = await asyncio.shield(pending)
        except asyncio.CancelledError:
            pending.add_done_callback(self._return_orphan_permit)
            raise
        return self._alone_acquire() if token is None else token

    @staticmethod
    async def _settle(run: Coroutine[Any, Any, int | None], token: int) -> int | None:
        """Report a trial's outcome even if the caller is cancelled meanwhile (else its permit
        would be held until its deadline, rejecting every process's trials)."""
        if token <= 0:
            return await run
        return await asyncio.shield(asyncio.ensure_future(run))

    def _return_orphan_permit(self, pending: asyncio.Future[int | None]) -> None:
        if not pending.cancelled() and pending.exception() is None:
            token = pending.result()
            if token is not None and token > 0:
                self.on_release(token)

    def _closed_success(self, token: int) -> bool:
        """Count a success; True if nothing else is to be done (no round trip)."""
        if self.state is DISABLED:  # untouched: no event, no record, its own outcome
            if self._listeners.callbacks:
                self.counts.disabled.increment()
            return True
        if self._listeners.callbacks:
            self.successes.increment()
        if token or self.state is not CLOSED:
            return False
        if self.tally is not None:
            self.tally()
        if self.dirty:
            return False
        if self._listeners.success_callbacks:
            self._notify(EventKind.SUCCESS, [])
        return True

    def _alone_success(self, token: int) -> None:
        self.fallback.on_success(token)
        self.copy_fallback()

    def on_success(self, token: int) -> None:
        if self._closed_success(token):
            return
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        if self.run("success", token, kind=kind) is None:
            self._alone_success(token)

    async def aon_success(self, token: int) -> None:
        if self._closed_success(token):
            return
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        if await self._settle(self.arun("success", token, kind=kind), token) is None:
            self._alone_success(token)

    def _disabled_call(self) -> bool:
        """True (after counting it under its own outcome) for a call through a disabled circuit:
        it records nothing, emits no event and costs no round trip."""
        if self.state is not DISABLED:
            return False
        if self._listeners.callbacks:
            self.counts.disabled.increment()
        return True

    def on_failure(self, token: int, reason: str, slow: bool = False, trip: bool = False) -> None:
        if self._disabled_call():
            return
        if self._listeners.callbacks:
            self.counts.failure.increment()
        kind = EventKind.FAILURE if self._listeners.call_callbacks else None
        if self.run("failure", token, reason, kind, slow, trip) is None:
            self.fallback.on_failure(token, reason, slow, trip)
            self.copy_fallback()

    async def aon_failure(self, token: int, reason: str, slow: bool = False, trip: bool = False) -> None:
        if self._disabled_call():
            return
        if self._listeners.callbacks:
            self.counts.failure.increment()
        kind = EventKind.FAILURE if self._listeners.call_callbacks else None
        if await self._settle(self.arun("failure", token, reason, kind, slow, trip), token) is None:
            self.fallback.on_failure(token, reason, slow, trip)
            self.copy_fallback()

    def on_exception(self, token: int, exc: BaseException) -> None:
        self.on_failure(token, exception_reason(exc))

    def on_slow_success(self, token: int) -> None:
        if self._disabled_call():
            return
        if self._listeners.callbacks:
            self.successes.increment()
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        if self.run("slow", token, kind=kind) is None:
            self.fallback.on_slow_success(token)
            self.copy_fallback()

    async def aon_slow_success(self, token: int) -> None:
        if self._disabled_call():
            return
        if self._listeners.callbacks:
            self.successes.increment()
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        if await self._settle(self.arun("slow", token, kind=kind), token) is None:
            self.fallback.on_slow_success(token)
            self.copy_fallback()

    def on_ignored(self, token: int) -> None:
        self.on_release(token)
        if not self._disabled_call() and self._listeners.callbacks:
            self.counts.ignored.increment()
            self._notify(EventKind.IGNORED, [])

    async def aon_ignored(self, token: int) -> None:
        self.on_ignored(token)

    def on_release(self, token: int) -> None:
        # Never blocks (it also runs in cancelled coroutines): handed to the backend's
        # worker thread. If that fails, the permit's deadline frees it anyway.
        if token > 0:
            self.fallback.on_release(token)
            self._backend.submit(lambda: self.run("release", token))

    def on_rejected(self, fallback: bool, observed: bool = False) -> None:
        if self._listeners.callbacks:
            _report_rejection(self, self._listeners, fallback, observed)

    # -- inspection and manual control ------------------------------------------------------

    def _known_availability(self) -> bool | None:
        """Availability decided from the mirror alone, or ``None`` if Redis must be asked."""
        if self.cold or self._health.degraded:
            return None
        if self._monotonic() < self.open_until:
            return False
        if self.state is CLOSED or self.state is HALF_OPEN or self.state is DISABLED:
            return True
        return None  # open past its deadline (half-open now) or unknown: ask

    def _availability_after_read(self, read: int | None) -> bool:
        if read is None:
            if self._health.on_storage_error != "local":
                return False
            return self.fallback.is_available()
        if self.state is CLOSED or self.state is DISABLED:
            return True
        if self.state is HALF_OPEN:
            return self._permits < self.policy.half_open_max_calls
        return False

    def is_available(self) -> bool:
        known = self._known_availability()
        return known if known is not None else self._availability_after_read(self.run("read"))

    async def ais_available(self) -> bool:
        known = self._known_availability()
        return known if known is not None else self._availability_after_read(await self.arun("read"))

    def snapshot(self) -> CircuitSnapshot:
        if self.run("read") is None:
            return self.fallback.snapshot()
        return self._snapshot()

    async def asnapshot(self) -> CircuitSnapshot:
        if await self.arun("read") is None:
            return self.fallback.snapshot()
        return self._snapshot()

    def _opened_view(self) -> tuple[str | None, Figures | None]:
        """Why the circuit opened and the figures that did, as a snapshot reports them."""
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

    def _snapshot(self) -> CircuitSnapshot:
        opened_by, frozen = self._opened_view()
        if frozen is None:
            frozen = self._figures(self._failures, self._window)
        failures, calls, failure_rate, slow_rate = frozen
        return CircuitSnapshot(
            service=self.service,
            state=self.state,
            failures=failures,
            max_failures=self._shown_max_failures or None,
            window_seconds=self._shown_window,
            retry_after=self._retry_after(),
            last_failure=self._last_failure(),
            trials_in_flight=self._permits,
            reopenings=self._reopenings,
            calls=calls,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
            opened_by=opened_by,
        )

    def _retry_after(self) -> float | None:
        if self.state is FORCED_OPEN:
            return None
        return max(0.0, self.open_until - self._monotonic())

    def _last_failure(self) -> dict[str, Any] | None:
        last = self._last
        if last is None:
            return None
        return {"reason": last[0], "ts": self._backend.wall_ts(last[1])}

    def open_error(self) -> CircuitError:
        health = self._health
        if health.degraded and health.on_storage_error == "raise":
            return CircuitBackendError(
                f"circuit store unavailable for {self.service!r} at {self._backend.describe()}"
                f" ({health.last_error})",
                service=self.service,
            )
        if health.degraded and health.on_storage_error == "local":
            return self.fallback.open_error()
        opened_by, frozen = self._opened_view()
        failures, calls, failure_rate, slow_rate = (
            (self._failures, None, None, None) if frozen is None else frozen
        )
        return CircuitOpenError(
            self.service,
            None if health.degraded else self._retry_after(),
            self._last_failure(),
            self.state,
            failures,
            self.policy.max_failures or 0,
            self.policy.window_seconds,
            opened_by,
            calls,
            failure_rate,
            slow_rate,
        )

    def last_failure(self) -> dict[str, Any] | None:
        if self.run("read") is None:
            return self.fallback.last_failure()
        return self._last_failure()

    def _unavailable(self, what: str) -> CircuitBackendError:
        health = self._health
        error = CircuitBackendError(
            f"cannot {what} {self.service!r}: circuit store at {self._backend.describe()} unavailable"
            f" ({health.last_error})",
            service=self.service,
        )
        return _chain_masked(error, health.last_exception, health.secrets.scrub)

    def hold_open(self, seconds: float) -> None:
        if self.state is not OPEN:  # as mirrored: nothing to hold, no round trip
            return
        if self.run("hold_open", reason=str(int(seconds * _MS))) is None:
            self.fallback.hold_open(seconds)
            self.copy_fallback()

    async def ahold_open(self, seconds: float) -> None:
        if self.state is not OPEN:
            return
        if await self.arun("hold_open", reason=str(int(seconds * _MS))) is None:
            self.fallback.hold_open(seconds)
            self.copy_fallback()

    def force_open(self, reason: str) -> None:
        if self.run("force_open", reason=reason) is None:
            raise self._unavailable("force open")
        self._backend.remember_forced(self.service, reason)

    def disable(self, reason: str) -> None:
        if self.run("disable", reason=reason) is None:
            raise self._unavailable("disable")
        self._backend.remember_forced(self.service, DISABLED_MARK + reason)

    def reset(self) -> None:
        if self.run("reset") is None:
            raise self._unavailable("reset")
        self._backend.forget_forced(self.service)
        self.fallback.reset()
