"""``RedisCircuit``: one service's circuit on the Redis backend, as the breaker calls it.

The call path reads the mirror only (``_mirror.py``): healthy calls and rejections make
no round trip; a failure, a trial and a first call make one (``_operations.py``).
This module holds that call path, inspection (``snapshot``, ``is_available``) and the
operators' controls, which record overrides through the registry (``_overrides.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..._counter import CallCounts
from ..._validate import exception_reason
from ...events import EventKind
from ...exceptions import CircuitBackendError, CircuitError, CircuitOpenError, _chain_masked
from ...policies import ServicePolicy
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
)
from ..base import log_record_error
from ..local import _report_rejection
from ._isolating import Isolating

if TYPE_CHECKING:
    from ._overrides import Overrides
    from ._store import Store

__all__ = ["RedisCircuit"]

_MS = 1000.0


class RedisCircuit(Isolating):
    """A service's circuit stored in Redis, mirrored in this process."""

    io_free = False
    on_exception_never_raises = True
    """``on_exception`` logs what goes wrong inside it (see ``CircuitHandle.on_exception``)."""

    def __init__(self, store: Store, overrides: Overrides, service: str, policy: ServicePolicy) -> None:
        super().__init__(store, overrides, service, policy)
        self._monotonic = store.clock.monotonic
        self.monotonic = store.clock.monotonic
        """The clock slow calls are timed with."""
        self.counts = CallCounts()
        """Outcomes seen while a listener was registered (for metrics)."""
        self.successes = self.counts.success
        self.window: CircuitModel | None = None  # successes go through tally (counted, flushed)

    def __repr__(self) -> str:
        return f"<RedisCircuit {self.service!r} {'cold' if self.cold else self.state.value}>"

    def roll_window(self) -> None:
        """Unused: ``window`` is ``None`` (the rate window lives in Redis)."""

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
        if self.isolation.state is not None:
            return self.isolated_acquire()
        token = self.run("acquire")
        return self._alone_acquire() if token is None else token

    async def aacquire(self) -> int:
        if self._monotonic() < self.open_until:
            return REJECT
        if self.state is DISABLED:
            return PASS
        if self.isolation.state is not None:
            return self.isolated_acquire()
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
        if self.isolation.state is not None and not token:
            self.isolated_success()  # this process alone: decided here, no round trip
            return True
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

    def _success_op(self) -> str:
        """``recheck`` for the first success after a policy change (the script checks the
        triggers under the new thresholds first), else ``success``."""
        if self.recheck:
            self.recheck = False
            return "recheck"
        return "success"

    def on_success(self, token: int) -> None:
        if self._closed_success(token):
            return
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        if self.run(self._success_op(), token, kind=kind) is None:
            self._alone_success(token)

    async def aon_success(self, token: int) -> None:
        if self._closed_success(token):
            return
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        if await self._settle(self.arun(self._success_op(), token, kind=kind), token) is None:
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
        isolating = self.judge_own(True, slow)
        if self.run("failure", token, reason, kind, slow, trip, isolating) is None:
            self.fallback.on_failure(token, reason, slow, trip)
            self.copy_fallback()
        else:
            self.isolate_if(isolating, reason)

    async def aon_failure(self, token: int, reason: str, slow: bool = False, trip: bool = False) -> None:
        if self._disabled_call():
            return
        if self._listeners.callbacks:
            self.counts.failure.increment()
        kind = EventKind.FAILURE if self._listeners.call_callbacks else None
        isolating = self.judge_own(True, slow)
        if (
            await self._settle(self.arun("failure", token, reason, kind, slow, trip, isolating), token)
            is None
        ):
            self.fallback.on_failure(token, reason, slow, trip)
            self.copy_fallback()
        else:
            self.isolate_if(isolating, reason)

    def on_exception(self, token: int, exc: BaseException) -> None:
        try:
            self.on_failure(token, exception_reason(exc))
        except Exception:
            log_record_error(self.service)

    def on_slow_success(self, token: int) -> None:
        if self._disabled_call():
            return
        if self._listeners.callbacks:
            self.successes.increment()
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        isolating = self.judge_own(False, True)
        if self.run("slow", token, kind=kind, isolating=isolating) is None:
            self.fallback.on_slow_success(token)
            self.copy_fallback()
        else:
            self.isolate_if(isolating, "slow call")

    async def aon_slow_success(self, token: int) -> None:
        if self._disabled_call():
            return
        if self._listeners.callbacks:
            self.successes.increment()
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        isolating = self.judge_own(False, True)
        if await self._settle(self.arun("slow", token, kind=kind, isolating=isolating), token) is None:
            self.fallback.on_slow_success(token)
            self.copy_fallback()
        else:
            self.isolate_if(isolating, "slow call")

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
            self._store.submit(lambda: self.run("release", token))
        elif self.isolation.state is not None:
            self.isolated_release()

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
            failing_processes=self._failing,
        )

    def _retry_after(self) -> float | None:
        if self.state is FORCED_OPEN:
            return None
        return max(0.0, self.open_until - self._monotonic())

    def _last_failure(self) -> dict[str, Any] | None:
        last = self._last
        if last is None:
            return None
        return {"reason": last[0], "ts": self._store.wall_ts(last[1])}

    def open_error(self) -> CircuitError:
        health = self._health
        if health.degraded and health.on_storage_error == "raise":
            return CircuitBackendError(
                f"circuit store unavailable for {self.service!r} at {self._store.where}"
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
        if self.refused:
            return CircuitBackendError(
                f"cannot {what} {self.service!r}: the Redis user at {self._store.where} may not run"
                f" the circuit script (EVALSHA/EVAL on {self.keys[0]!r} and its neighbours):"
                f" {self._health.last_refusal}",
                service=self.service,
            )
        health = self._health
        error = CircuitBackendError(
            f"cannot {what} {self.service!r}: circuit store at {self._store.where} unavailable"
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

    def _override(self, op: str, reason: str, what: str) -> None:
        """Record an operator's override in the registry first (it must survive a data loss),
        then in the circuit's keys; ``CircuitBackendError`` if either is not done."""
        if self._health.degraded:
            raise self._unavailable(what)
        with self._overrides.changing(self.service), self.operator_writing():
            earlier = self._overrides.known.get(self.service)
            self._overrides.record(self.service, op, reason)
            if self.run(op, reason=reason) is None:
                error = self._unavailable(what)
                with contextlib.suppress(CircuitBackendError):  # not in the circuit's keys: not recorded
                    if earlier is None:
                        self._overrides.erase(self.service)
                    else:  # the keys still hold the earlier override: so does the registry
                        self._overrides.record(self.service, earlier.op, earlier.reason)
                raise error

    def force_open(self, reason: str) -> None:
        self._override("force_open", reason, "force open")

    def disable(self, reason: str) -> None:
        self._override("disable", reason, "disable")

    def reset(self) -> None:
        if self._health.degraded:
            raise self._unavailable("reset")
        with self._overrides.changing(self.service), self.operator_writing():
            self._overrides.erase(self.service)
            if self.run("reset") is None:
                raise self._unavailable("reset")
        self.fallback.reset()
