"""Running one operation of a circuit in Redis, sync or async, and mirroring its reply.

Each operation is one run of the script (``circuit.lua``) with this circuit's keys
and policy. A failure or a slow call also carries the process's successes not yet
sent to the rate window (no extra round trip). What the store could not decide
returns ``None``: the caller then decides with the per-process fallback.

A store that *refuses* the script (a missing ACL grant) is not an outage: the call is
decided locally, the refusal is logged as a configuration error, and the backend
never reports ``storage_degraded`` for it.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..._counter import AtomicCounter
from ...events import EventKind
from ...exceptions import CircuitBackendError
from ...policies import RATE_BUCKETS, ServicePolicy
from ...state import CLOSED, Transition
from ..local import _rebind_watchers
from ._buckets import calls_key, flusher_for
from ._clients import STORAGE_ERRORS
from ._mirror import Mirror
from ._refusals import is_refusal
from ._reporters import reporters_key
from ._script import BadReply, Reply, aeval, eval_script

if TYPE_CHECKING:
    from ._overrides import Overrides
    from ._store import Store

__all__ = ["Operations"]

_MS = 1000.0
_TRIAL_GRACE_MS = 1000
"""How long past its open time an isolated process's mark counts (circuit.lua's TRIAL_GRACE_MS)."""
_STORE_FAILED: tuple[type[Exception], ...] = (*STORAGE_ERRORS, CircuitBackendError)
_CARRY = frozenset({"failure", "slow"})
"""Operations that add the process's unsent successes to the rate window first."""
_OUTCOMES = frozenset({"success", "recheck", "failure", "slow", "release"})
"""Operations that end a trial: one that could not reach Redis is owed until it does."""


class Operations(Mirror):
    """A mirror that runs the circuit's operations in Redis."""

    def __init__(self, store: Store, overrides: Overrides, service: str, policy: ServicePolicy) -> None:
        super().__init__(store, overrides, service, policy)
        self._clock = store.clock
        self._listeners = store.listeners
        base = store.keys.for_service(service, cluster=True)  # state, failures, permits
        # Then the rate buckets, the reporters and (one server only) the namespace's change counter.
        changes = () if store.cluster else (store.keys.changes,)
        self.keys: tuple[str, ...] = (*base, calls_key(base[0]), reporters_key(base[0]), *changes)
        self._args: list[Any] = []
        self._rate_args: list[Any] = []
        self._quorum: Any = b"1"
        self.bucket_ms = self.window_ms = 0
        self.observe = False
        """The policy's mode is observe: a call the circuit would reject runs anyway."""
        self.slow_after: float | None = None
        """The policy's ``slow_call_seconds``: calls are timed only when it is set."""
        self._derive_from_policy()
        self.pending = AtomicCounter()
        """Fast successes counted here for the rate triggers; ``flushed`` of them are in Redis."""
        self.flushed = 0
        self._pending_lock = threading.Lock()
        self.tally: Callable[[], None] | None = self._tally if policy.counts_calls else None
        self.policy_watchers: weakref.WeakKeyDictionary[Callable[..., Any], Callable[[], None]] = (
            weakref.WeakKeyDictionary()
        )
        """Wrappers made by ``protect`` and how to bind each again when the policy changes."""
        self._trials: set[int] = set()
        """Trial permits Redis granted to this process's calls, not yet given back."""
        self.owed: dict[int, tuple[str, str, bool]] = {}
        """Trial outcomes Redis did not hear (token -> op, reason, slow): the refresher reports
        them as soon as Redis answers, so the permit is not held until its deadline."""
        self._owed_lock = threading.Lock()
        self.refused = False
        """The last operation was refused by the server (a missing grant), not lost."""
        self._flushed = policy.counts_calls
        if policy.counts_calls:
            flusher_for(store).register(self)

    def _derive_from_policy(self) -> None:
        """What the script is given and the call path reads, derived from ``policy``."""
        policy, store = self.policy, self._store
        self._args = [
            policy.max_failures or 0,
            int(policy.window_seconds * _MS),
            int(policy.open_seconds * _MS),  # type: ignore[operator]
            policy.backoff_multiplier,
            int(policy.max_open_seconds * _MS),  # type: ignore[operator]
            policy.half_open_max_calls,
            policy.success_threshold,
            int(policy.trial_timeout_seconds * _MS),
            int(store.meta_ttl_seconds * _MS),
            store.keys.channel,
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
        # Numbers as the bytes redis-py would send for them, made once: encoding three dozen
        # arguments per run was half of the Python time of reading many circuits at start-up.
        self._args = [_wire(value) for value in self._args]
        self._rate_args = [_wire(value) for value in self._rate_args]
        self._quorum = _wire(policy.min_failing_processes)
        self.bucket_ms = policy.bucket_ms
        self.window_ms = int(policy.window_seconds * _MS)
        # How long the reporters live after a flush of successes marks this process: never less
        # than a mark there may need (an isolated process's: its open time, at most
        # max_open_seconds, and its first trial's second), meta_ttl or twice the window, and a
        # quarter more, as the script pushes it (circuit.lua's outlive): a flush never cuts it.
        longest_open_ms = int(max(policy.open_seconds, policy.max_open_seconds) * _MS)  # type: ignore[type-var,operator]
        keep = max(2 * self.window_ms, int(store.meta_ttl_seconds * _MS), longest_open_ms + _TRIAL_GRACE_MS)
        self.reporters_keep_ms = keep + keep // 4
        self.observe = policy.mode == "observe"
        self.slow_after = policy.slow_call_seconds

    def set_policy(self, policy: ServicePolicy) -> None:
        """Decide this process's calls by ``policy`` from now on: the script gets its figures from
        the next round trip (which evaluates the shared state under them), and the per-process
        fallback takes it too. Wrappers made by ``protect`` read it at their next call."""
        with self._news_lock:
            self.policy = policy
            self._derive_from_policy()
            self.tally = self._tally if policy.counts_calls else None
            register = policy.counts_calls and not self._flushed
            self._flushed = self._flushed or policy.counts_calls
        if register:
            flusher_for(self._store).register(self)
        self.fallback.set_policy(policy)
        _rebind_watchers(self)
        if not self.cold:
            # One round trip: the shared state takes this process's thresholds, and an open
            # deadline further away than the new open time is cut to it (for the fleet).
            self.run("policy")
        if self.state is CLOSED:
            # The next outcome, a success too, checks the triggers under the new thresholds.
            self.recheck = self.dirty = True

    def script_args(
        self,
        op: str,
        token: int = 0,
        reason: str = "",
        slow: bool = False,
        successes: int = 0,
        trip: bool = False,
        isolating: str = "",
    ) -> list[Any]:
        return [
            op,
            self._store.now_arg(),
            *self._args,
            token,
            reason,
            *self._good,
            *self._rate_args,
            "1" if slow else "0",
            successes,
            "1" if trip else "0",
            self._store.reporter,
            self._quorum,
            isolating,
        ]

    # -- successes for the rate window ---------------------------------------------------

    def own_successes(self) -> int:
        return self.pending.value

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

    def _successes(self, op: str, token: int) -> int:
        """The successes a script run adds to the rate window: a failure or a slow call carries
        the unsent ones; a first success, on a circuit not read yet, is itself one."""
        if self.tally is None:
            return 0
        if op in _CARRY:
            return self.take_pending()
        return 1 if op in ("success", "recheck") and token == 0 and self.cold else 0

    def _tally(self) -> None:
        """A fast success while closed: counted in memory, added to Redis in the background."""
        self.pending.increment()
        if self._health.degraded and self.fallback.tally is not None:
            self.fallback.tally()  # deciding alone meanwhile: the local window counts it too

    # -- one operation ----------------------------------------------------------------------

    def apply(self, reply: Reply) -> tuple[int, list[Transition]]:
        """Mirror a script's reply; return its result and the transitions it made.

        Transitions come from the script itself (not from comparing mirrors), so the
        process that caused a change reports it exactly once.
        """
        self.accept(reply)
        if reply.repaired:
            self._health.bad_data(
                self.service, "stored state was unreadable; rewritten from the last good one"
            )
        return reply.result, list(itertools.pairwise(reply.path))

    def _notify(self, kind: EventKind | None, changes: list[Transition], reason: str | None = None) -> None:
        self._listeners.notify(
            kind, self.service, self.state, changes, self._clock.time, reason, self._opened[0]
        )

    def _finish(self, raw: Any, op: str, token: int, reason: str, kind: EventKind | None) -> int | None:
        try:
            result, changes = self.apply(Reply.parse(raw))
        except BadReply as exc:
            self._health.bad_data(self.service, str(exc))
            return None
        if op == "acquire" and result > 0:
            self._trials.add(result)
        elif token > 0 and op in _OUTCOMES:
            self._trials.discard(token)
        if op == "read":
            changes = []  # a read stores nothing; the next write makes (and reports) the change
        if changes or kind is not None:
            self._notify(kind, changes, reason or None)
        return result

    def _op(self, op: str) -> str:
        # A process's first read of a circuit also lists it as in use (for status and
        # operators), as its first call would.
        return "touch" if op == "read" and self.cold else op

    def _owe(self, op: str, token: int, reason: str, slow: bool) -> None:
        """A trial's outcome Redis did not hear: kept until the refresher reports it."""
        if token > 0 and op in _OUTCOMES and token in self._trials:
            with self._owed_lock:
                self.owed[token] = (op, reason, slow)

    def settle_owed(self, client: Any) -> None:
        """Report the trial outcomes Redis did not hear (the refresher's thread, once it answers).

        Raises the store's error: what was not reported stays owed.
        """
        with self._owed_lock:
            owed = list(self.owed.items())
        for token, (op, reason, slow) in owed:
            raw = eval_script(client, self.keys, self.script_args(op, token, reason, slow))
            with self._owed_lock:
                self.owed.pop(token, None)
            self._trials.discard(token)
            try:
                self.apply(Reply.parse(raw))
            except BadReply as exc:
                self._health.bad_data(self.service, str(exc))

    def after_fork(self) -> None:
        """In a forked child: the parent's trials and unreported outcomes are the parent's."""
        self._owed_lock = threading.Lock()
        self._trials = set()
        self.owed = {}

    def _failed(self, exc: Exception, successes: int) -> None:
        self.give_back(successes)
        if is_refusal(exc):
            self.refused = True
            self._health.refused(exc)  # a configuration error, not an outage
        else:
            self._store.failed(exc)

    def run(
        self,
        op: str,
        token: int = 0,
        reason: str = "",
        kind: EventKind | None = None,
        slow: bool = False,
        trip: bool = False,
        isolating: str = "",
    ) -> int | None:
        """Run ``op`` in Redis; ``None`` if the store could not decide (the caller falls back)."""
        if self._health.degraded:
            self._owe(op, token, reason, slow)
            return None
        self._store.start_threads()
        self.refused = False
        successes = self._successes(op, token)
        try:
            raw = eval_script(
                self._store.client(),
                self.keys,
                self.script_args(self._op(op), token, reason, slow, successes, trip, isolating),
            )
        except _STORE_FAILED as exc:
            self._failed(exc, successes)
            self._owe(op, token, reason, slow)
            return None
        return self._finish(raw, op, token, reason, kind)

    async def arun(
        self,
        op: str,
        token: int = 0,
        reason: str = "",
        kind: EventKind | None = None,
        slow: bool = False,
        trip: bool = False,
        isolating: str = "",
    ) -> int | None:
        if self._health.degraded:
            self._owe(op, token, reason, slow)
            return None
        self._store.start_threads()
        self.refused = False
        successes = self._successes(op, token)
        try:
            client = self._store.aclient()
            raw = await aeval(
                client,
                self.keys,
                self.script_args(self._op(op), token, reason, slow, successes, trip, isolating),
            )
        except _STORE_FAILED as exc:
            self._failed(exc, successes)
            self._owe(op, token, reason, slow)
            return None
        return self._finish(raw, op, token, reason, kind)

    def restore(self, op: str, reason: str) -> None:
        """Write an operator's override again after a data loss (the refresher's thread).

        Raises the store's error: the override stays pending and is tried again.
        """
        raw = eval_script(self._store.client(), self.keys, self.script_args(op, reason=reason))
        try:
            self.apply(Reply.parse(raw))
        except BadReply as exc:
            self._health.bad_data(self.service, str(exc))


def _wire(value: object) -> object:
    """A script argument as redis-py puts it on the wire: a number as the ASCII of its
    ``repr``; text as is (the client encodes it with its own encoding)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return repr(int(value)).encode("ascii")  # (an int subclass's repr may not be its number)
    if isinstance(value, float):
        return repr(float(value)).encode("ascii")
    return value
