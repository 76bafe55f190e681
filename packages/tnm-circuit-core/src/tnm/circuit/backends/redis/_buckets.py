"""Successes for the rate triggers: counted per process, added to Redis in the background.

A rate needs every call, but a healthy call must not cost a round trip. So each
process counts its fast successes in memory (one atomic increment, no clock read) and
a small thread adds them to the service's rate buckets every ``FLUSH_INTERVAL``
seconds, in one pipeline for every service: ``HINCRBY`` and ``PEXPIRE`` per service
that had successes. Failures and slow calls go through the script as they happen, and
each of those runs computes the fleet's rates from the buckets atomically.

**Staleness.** A success is in the fleet's counts at most ``FLUSH_INTERVAL`` (0.2 s)
plus one round trip after it happened (plus the time the flushing thread waits for
the CPU on a loaded host). Until then the fleet's failure rate can read higher than
it is, by at most what this process did in that time; so a rate the script finds met
while other processes call is decided 0.25 s later (``decide``, asked by this thread
when it falls due, or the next failure), on a window that holds their successes. Each
flush also marks this process as calling the service (the reporters, ``_reporters.py``).
Successes are added to the bucket of the moment they are flushed, so one may land one bucket (a tenth of the
window) later than it happened. While Redis is unreachable the counts wait here and
are added once it answers again, unless a whole window went by meanwhile (they are
dropped: they could only make the window look better than it is).

The bucket key shares the service's Redis Cluster hash tag (``{namespace}:{tag}:calls``
beside ``:state``), so the script touches one slot.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from ._clients import STORAGE_ERRORS

if TYPE_CHECKING:
    from ._operations import Operations
    from ._store import Store

__all__ = ["FLUSHER_THREAD", "FLUSH_INTERVAL", "SuccessFlusher", "calls_key", "flusher_for"]

FLUSHER_THREAD = "tnm-circuit-flusher"

FLUSH_INTERVAL = 0.2
"""Seconds between two additions of this process's successes to Redis."""

TRIM_EVERY = 50
"""Every this many flushes (and at the first), each flushed service's reporters are trimmed to
the window: a service that never fails would otherwise keep a member per process that ever
called it (the script trims only when it adds a member)."""


def calls_key(state_key: str) -> str:
    """The rate buckets' key beside ``state_key`` (same hash tag, so the same Cluster slot)."""
    return state_key[: -len("state")] + "calls"


class SuccessFlusher:
    """Adds the successes counted by this process's circuits to their Redis buckets."""

    def __init__(self, store: Store) -> None:
        self._store = weakref.ref(store)
        self.circuits: list[Operations] = []
        self.flushes = 0
        """Pipelines sent (for tests and benchmarks)."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ok = time.monotonic()

    def register(self, circuit: Operations) -> None:
        with self._lock:
            self.circuits.append(circuit)
        self.start()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, name=FLUSHER_THREAD, daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread after one last flush (so that no counted success is lost)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def after_fork(self) -> None:
        """In a forked child: the parent's counts are the parent's; start afresh."""
        self._lock = threading.Lock()
        self._thread = None
        for circuit in self.circuits:
            circuit.take_pending()  # the parent's counts: the parent sends them
        if self.circuits:
            self.start()

    def flush(self) -> int:
        """Send the successes counted since the last flush; returns how many were sent."""
        store = self._store()
        if store is None or store.health.degraded:
            return 0
        now_ms = store.server_ms_now()
        if now_ms == float("inf"):
            return 0  # the server's time is not known yet
        batch = [(c, n) for c in list(self.circuits) if (n := c.take_pending())]
        if not batch:
            self._last_ok = time.monotonic()
            return 0
        try:
            pipe: Any = store.client().pipeline(transaction=False)
            seen = f"s:{store.reporter}"
            trim = self.flushes % TRIM_EVERY == 0
            for circuit, successes in batch:
                key = circuit.keys[3]
                pipe.hincrby(key, f"{int(now_ms) // circuit.bucket_ms}:c", successes)
                pipe.pexpire(key, circuit.window_ms * 2)
                # This process calls the service: a rate met meanwhile waits for its flushes.
                pipe.zadd(circuit.keys[4], {seen: now_ms})
                if trim:  # (the callers' band only: the script trims the failed and isolated)
                    pipe.zremrangebyscore(circuit.keys[4], "-inf", now_ms - circuit.window_ms)
                pipe.pexpire(circuit.keys[4], circuit.reporters_keep_ms)
            pipe.execute()
        except STORAGE_ERRORS:
            if time.monotonic() - self._last_ok <= max(c.window_ms for c, _ in batch) / 1000.0:
                for circuit, successes in batch:
                    circuit.give_back(successes)
            # else: a whole window late; dropped rather than skew the window
            return 0
        self._last_ok = time.monotonic()
        self.flushes += 1
        return sum(successes for _, successes in batch)

    def _loop(self) -> None:
        stop = self._stop
        while not stop.wait(self._next_wait()):
            self._flush_quietly()
            self._decide_due()
        self._flush_quietly()

    def _next_wait(self) -> float:
        """Until the next flush, or sooner if a deferred rate decision falls due before it."""
        due = [c.decide_at for c in list(self.circuits) if c.decide_at is not None]
        if not due:
            return FLUSH_INTERVAL
        store = self._store()
        now = time.monotonic() if store is None else store.clock.monotonic()
        return min(FLUSH_INTERVAL, max(0.0, min(due) - now))

    def _decide_due(self) -> None:
        """Ask for the rate decisions the script deferred and that are now due (the flush
        just sent this process's successes; the others' were sent meanwhile)."""
        store = self._store()
        if store is None:
            return
        now = store.clock.monotonic()
        for circuit in list(self.circuits):
            due = circuit.decide_at
            if due is not None and due <= now:
                circuit.decide_at = None
                try:
                    circuit.run("decide")
                except Exception:  # never kill the thread
                    store.health.listener_failed()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # a bug must not kill the thread, nor flood the log
            store = self._store()
            if store is not None:
                store.health.listener_failed()


_FLUSHERS: weakref.WeakKeyDictionary[Any, SuccessFlusher] = weakref.WeakKeyDictionary()
_FLUSHERS_LOCK = threading.Lock()


def flusher_for(store: Store) -> SuccessFlusher:
    """The store's flusher, made on first use (only stores with a rate policy have one)."""
    flusher = _FLUSHERS.get(store)
    if flusher is None:
        with _FLUSHERS_LOCK:
            flusher = _FLUSHERS.get(store)
            if flusher is None:
                flusher = _FLUSHERS[store] = SuccessFlusher(store)
    return flusher


def stop_flusher(store: Store, timeout: float) -> None:
    """``RedisBackend.close`` hook: flush one last time and stop the thread, if there is one."""
    flusher = _FLUSHERS.get(store)
    if flusher is not None:
        flusher.stop(timeout)


def start_flusher(store: Store) -> None:
    """``RedisBackend.start_threads`` hook: a flusher stopped by ``close`` runs again."""
    flusher = _FLUSHERS.get(store)
    if flusher is not None and flusher.circuits:
        flusher.start()


def _after_fork_in_child() -> None:
    global _FLUSHERS_LOCK
    _FLUSHERS_LOCK = threading.Lock()
    for flusher in list(_FLUSHERS.values()):
        flusher.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
