"""Whether the store answers, and what the backend says about it.

``StorageHealth`` holds the ``degraded`` flag that every circuit checks, emits the
storage events, and writes the warnings. Warnings follow the logging HOWTO's advice
for libraries (the ``tnm.circuit`` logger, no handler of our own) and are
rate-limited: an outage is reported as one "unavailable" line and one "back" line,
and outages that start within ``warn_interval`` of a reported one are only counted
(the next report says how many), so a store that fails every few milliseconds
cannot flood the log.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from ...clock import Clock
from ...events import CircuitEvent, EventKind, ListenerList
from ._urls import Secrets

__all__ = ["RateLimit", "StorageHealth"]

logger = logging.getLogger("tnm.circuit")

_MODES = {"local": "per process", "reject": "by rejecting them", "raise": "by raising"}


_NO_PASSWORD_GIVEN = (
    "NOAUTH",
    "Authentication required",
    "HELLO must be called with the client already authenticated",
)
"""What Redis (through redis-py) says when the URL gives no password and the server needs one."""


class RateLimit:
    """At most one report per ``interval``; counts what it held back."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -math.inf
        self.held_back = 0
        self._lock = threading.Lock()

    def allow(self) -> int | None:
        """``None`` if a report now would be too soon; else how many were held back since the last."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                self.held_back += 1
                return None
            self._last = now
            held, self.held_back = self.held_back, 0
            return held


def _held(count: int) -> str:
    return f" ({count} similar reports held back)" if count else ""


class StorageHealth:
    def __init__(
        self,
        where: str,
        on_storage_error: str,
        warn_interval: float,
        listeners: ListenerList,
        clock: Clock,
        secrets: Secrets,
        on_degrade: Callable[[], None],
    ) -> None:
        self.where = where
        self.on_storage_error = on_storage_error
        self.listeners = listeners
        self.clock = clock
        self.secrets = secrets
        self._on_degrade = on_degrade
        self.degraded = False
        self.last_error = ""
        self.last_exception: BaseException | None = None
        """The store's last error itself, to chain (masked) under the error an operator gets."""
        """What the store said last time it failed (secrets masked)."""
        self._outages = RateLimit(warn_interval)
        self._outage_reported = False
        self._corruption = RateLimit(warn_interval)
        self._refusals = RateLimit(warn_interval)
        self._evictions = RateLimit(warn_interval)
        self.last_refusal = ""
        """What the store said last time it refused a command (secrets masked)."""
        self._lock = threading.Lock()

    def describe(self, exc: BaseException) -> str:
        """``Type: message`` of a storage error, with every secret masked."""
        text = self.secrets.scrub(str(exc).strip())
        # (redis-py words it by version: NOAUTH, "Authentication required", or HELLO's refusal)
        if any(sign in text for sign in _NO_PASSWORD_GIVEN):
            text += " (this Redis needs a password (or ACL user) in the URL: redis://[user]:password@host:port/db)"
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def degrade(self, exc: BaseException) -> None:
        """The store failed a command: decide calls without it until it answers again."""
        self.last_error = self.describe(exc)
        self.last_exception = exc
        with self._lock:
            if self.degraded:
                return
            self.degraded = True
            held = self._outages.allow()
            self._outage_reported = held is not None
        self._on_degrade()
        if held is not None:
            logger.warning(
                "circuit store at %s unavailable (%s); deciding calls %s until it is back%s",
                self.where,
                self.last_error,
                _MODES[self.on_storage_error],
                _held(held),
            )
        self.storage_event(EventKind.STORAGE_DEGRADED, "*", self.last_error)

    def recover(self) -> None:
        with self._lock:
            if not self.degraded:
                return
            self.degraded = False
            reported = self._outage_reported
        if reported:
            logger.warning("circuit store at %s is back; shared state resumes", self.where)
        self.storage_event(EventKind.STORAGE_RECOVERED, "*", None)

    def data_lost(self, restored: int) -> None:
        logger.warning(
            "circuit store at %s lost its data (flushed, or restarted without persistence);"
            " %d forced-open circuit(s) restored, failure counts and open circuits start afresh",
            self.where,
            restored,
        )
        self.storage_event(EventKind.STORAGE_RESET, "*", f"{restored} forced-open circuit(s) restored")

    def check_eviction(self, policies: set[str]) -> None:
        """Warn if the store may evict the breaker's keys under memory pressure: every policy
        but ``noeviction`` can (the library's keys carry TTLs, so ``volatile-*`` too)."""
        unsafe = sorted(p for p in policies if p != "noeviction")
        if unsafe:
            logger.warning(
                "circuit store at %s may evict circuit state under memory pressure"
                " (maxmemory-policy %s): forced-open circuits and open circuits could silently"
                " close; set maxmemory-policy noeviction on the server holding circuit state"
                " (docs/production-redis.md)",
                self.where,
                ", ".join(unsafe),
            )

    def circuit_lost(self, service: str, restored: bool) -> None:
        """One circuit's keys vanished while it held a state (evicted under memory pressure,
        or deleted): a data loss of that circuit only."""
        what = "the operator's override restored" if restored else "its state starts afresh"
        held = self._evictions.allow()
        if held is not None:
            logger.warning(
                "circuit store at %s lost the keys of circuit %r (evicted or deleted: keep"
                " maxmemory-policy noeviction, see docs/production-redis.md); %s%s",
                self.where,
                service,
                what,
                _held(held),
            )
        self.storage_event(EventKind.STORAGE_RESET, service, f"keys lost; {what}")

    def bad_data(self, service: str | None, what: str) -> None:
        """Corrupt data in one circuit's keys or on the channel (never more than a warning)."""
        held = self._corruption.allow()
        if held is not None:
            logger.warning(
                "circuit store at %s: ignored or repaired corrupt data%s: %s%s",
                self.where,
                "" if service is None else f" for {service!r}",
                self.secrets.scrub(what),
                _held(held),
            )
        if service is not None:
            self.storage_event(EventKind.STORAGE_REPAIRED, service, what)

    def refused(self, exc: BaseException) -> None:
        """The store refused a command (a missing grant): a configuration error, logged at most
        once per ``warn_interval``, never an outage (calls are decided here meanwhile)."""
        self.last_refusal = self.describe(exc)
        held = self._refusals.allow()
        if held is not None:
            logger.error(
                "circuit store at %s refused a command (a configuration error, not an outage:"
                " grant the Redis user what docs/production-redis.md lists); deciding calls"
                " per process meanwhile: %s%s",
                self.where,
                self.describe(exc),
                _held(held),
            )

    def listener_failed(self) -> None:
        """A bug in the background threads: logged with its traceback, rate-limited."""
        held = self._corruption.allow()
        if held is not None:
            logger.exception("tnm-circuit Redis background thread failed; restarting%s", _held(held))

    def storage_event(self, kind: EventKind, service: str, reason: str | None) -> None:
        if self.listeners.callbacks:
            self.listeners.emit(CircuitEvent(kind, service, None, self.clock.time(), reason=reason))
