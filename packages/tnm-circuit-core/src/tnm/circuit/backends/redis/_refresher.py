"""The refresher: the backend's second thread, for everything that is not a notice.

Every ``refresh_interval`` (and at once when asked) it:

1. probes the store with a write (``SET NX`` of the namespace epoch), so a store
   that stopped taking writes (out of memory, demoted) keeps the backend degraded;
2. compares the epoch with the one it knew: a store that lost its data (``FLUSHALL``,
   a restart without persistence) is reported as ``storage_reset`` (service ``"*"``),
   and the operators' overrides the fleet knew of are written again; and checks that
   the keys of every circuit that must have them (forced open, disabled, open before
   its deadline) still exist: one evicted or deleted alone is reported as
   ``storage_reset`` with its service's name, its override (if any) is written again,
   and every mirror is read afresh;
3. re-reads every mirrored circuit in one pipeline (per node on a Cluster), but only
   when it may have missed a notice: the namespace's change counter moved (one
   server), the listener subscribed again, the store came back or lost its data, or
   every ``meta_ttl_seconds / 3`` (which also keeps in-use circuits listed). So an idle
   process costs a constant handful of commands per round, whatever the number of
   circuits;
4. while degraded, a successful round is the recovery: shared state resumes.

It also runs the small tasks the call path hands off (returning a permit from a
cancelled call), so that those never block the caller.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any

from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterError,
    MasterDownError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from ._clients import STORAGE_ERRORS, is_cluster
from ._keys import VERSION_FIELD
from ._pipelines import eval_batches
from ._refusals import is_refusal
from ._script import BadReply, Reply, decode
from ._worker import Worker

if TYPE_CHECKING:
    from ._circuit import RedisCircuit
    from ._overrides import Overrides
    from ._policy_registry import PolicyRegistry
    from ._store import Store

__all__ = ["Refresher"]


READ_BATCH = 500
"""Circuits read per pipeline in a full read."""


def _is_data_error(exc: Exception) -> bool:
    """An error about what one command did (a script error), not about reaching the store
    (redis-py strips the error code from the message: the class says it)."""
    return isinstance(exc, ResponseError) and not isinstance(
        exc, (ReadOnlyError, BusyLoadingError, MasterDownError, ClusterError, TryAgainError, AskError)
    )


class Refresher(Worker):
    thread_name = "tnm-circuit-refresher"

    def __init__(
        self,
        store: Store,
        overrides: Overrides,
        circuit_for: Callable[[str], RedisCircuit],
        policies: PolicyRegistry,
    ) -> None:
        super().__init__()
        self._store = store
        self._overrides = overrides
        self._policies = policies
        self._circuit_for = circuit_for
        self.epoch: str | None = None
        self.read_done = threading.Event()
        """Set once no full read is owed (tests wait on it before counting commands)."""
        self.tasks: deque[Callable[[], object]] = deque()
        self._wake = threading.Event()
        self._resync_now = False
        self._full_needed = True
        self._changes_seen: bytes | None = None
        self._subscribed_since_read = False
        self._next_full = 0.0

    def _wake_up(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> None:
        super().stop(timeout)
        self._run_tasks()

    def submit(self, task: Callable[[], object]) -> None:
        self.tasks.append(task)
        self._wake.set()

    def resync_soon(self) -> None:
        """Re-read every mirror at once (notices may have been missed)."""
        self.read_done.clear()
        self._full_needed = True
        self._resync_now = True
        self._wake.set()

    def resubscribed(self) -> None:
        """The listener (re)subscribed: notices published since the last read were missed, if
        any. On one server the namespace's change counter says whether there were (the next
        round reads every mirror only if it moved: ``initialize()`` then reads each circuit
        once, not twice); on a Cluster, which keeps no counter, every mirror is read again."""
        self.read_done.clear()
        self._subscribed_since_read = True
        self._resync_now = True
        self._wake.set()

    def read_policies_soon(self) -> None:
        """Read the policy registry on this thread at once (a notice said it changed)."""
        self.submit(self._read_policies)
        self._wake.set()

    def _read_policies(self) -> None:
        if self._stop.is_set():
            return  # closed: a closed backend neither applies nor repairs anything
        try:
            client = self._store.client()
            mark = self._policies.mark()
            policies = client.hgetall(self._store.keys.policies)
            if self.epoch is not None and _epoch(client.get(self._store.keys.epoch)) != self.epoch:
                # Emptied before or while we read (FLUSHALL, a restart): what was read may lack
                # overrides this process knows. The next round (now) reports the loss and
                # writes them back.
                self.resync_soon()
                return
            self._policies.read(policies, client, mark)
        except STORAGE_ERRORS:
            pass  # the next round reads it (and reports the trouble)

    # -- one round ------------------------------------------------------------------

    def _repair_namespace_keys(self, client: Any) -> None:
        """Remove namespace keys of the wrong type (written by someone else), with a warning."""
        keys = self._store.keys
        for key, wanted in (
            (keys.epoch, "string"),
            (keys.forced, "hash"),
            (keys.policies, "hash"),
            (keys.changes, "string"),
        ):
            found = decode(client.type(key))
            if found not in (wanted, "none"):
                client.delete(key)
                self._store.health.bad_data(None, f"{key} was a {found}, not a {wanted}; removed")

    def check_epoch(self, client: Any) -> bool:
        try:
            return self._check_epoch(client)
        except ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            self._repair_namespace_keys(client)
            return self._check_epoch(client)

    def _check_epoch(self, client: Any) -> bool:
        """Probe with a write and read the epoch; True if the store lost its data since last time.

        Also reads the forced-open registry, the server's time and (one server) the change
        counter, which decides whether the mirrors need a full read.
        """
        keys = self._store.keys
        resubscribed, self._subscribed_since_read = self._subscribed_since_read, False
        mark, forced_mark = self._policies.mark(), self._overrides.mark()
        # Circuits whose keys must exist (forced open, disabled, open before their deadline):
        # one that is gone was evicted or deleted, and no notice says so. Its stored version
        # is read, not whether the hash exists: another process may have listed the circuit
        # again (a hash without the version read here) before this round looked.
        # (With the version each mirror had read before this round's read: a reply that a
        # caller or the listener applies meanwhile is newer than what this round reads.)
        watched = (
            []
            if self._store.health.degraded
            else [(c, c.seen_version) for c in self._store.circuits.values() if c.must_exist()]
        )
        # The epoch is read after the registries: a loss before or between these reads shows
        # as a changed (or missing) epoch, never as registries read empty under the old one.
        if is_cluster(client):  # keys in different slots, TIME on any node: one by one
            client.set(keys.epoch, secrets.token_hex(8), nx=True)
            forced, policies, (seconds, micros), epoch = (
                client.hgetall(keys.forced),
                client.hgetall(keys.policies),
                client.time(),
                client.get(keys.epoch),
            )
            versions = [_stored_version(client, c.keys[0]) for c, _ in watched]
            if resubscribed:
                self._full_needed = True  # no change counter to tell what was missed
        else:
            pipe = client.pipeline(transaction=False)
            pipe.set(keys.epoch, secrets.token_hex(8), nx=True)
            pipe.hgetall(keys.forced)
            pipe.hgetall(keys.policies)
            pipe.time()
            pipe.get(keys.changes)
            for circuit, _ in watched:
                pipe.hget(circuit.keys[0], VERSION_FIELD)
            pipe.get(keys.epoch)
            # (A circuit's key of the wrong type fails only its own HGET: that circuit's next
            # script run repairs it. Any other error is the round's, as before.)
            replies = pipe.execute(raise_on_error=False)
            versions = replies[5:-1]
            failed = [r for r in replies[:5] + replies[-1:] if isinstance(r, Exception)]
            failed += [v for v in versions if isinstance(v, Exception) and not _wrong_type(v)]
            if failed:
                raise failed[0]
            _, forced, policies, (seconds, micros), changes = replies[:5]
            epoch = replies[-1]
            if changes != self._changes_seen:
                self._changes_seen = changes  # read before the mirrors: a later change moves it again
                self._full_needed = True
        self._store.saw_server_time(int(seconds) * 1000 + int(micros) // 1000, server_clock=True)
        epoch = _epoch(epoch)  # None: emptied after this round's SET NX (reported now, once)
        lost = self.epoch is not None and epoch != self.epoch
        self.epoch = epoch
        if lost:
            # Every override the fleet held, until each is restored (a failed restore is
            # tried again next round: the new epoch no longer says "lost").
            self._overrides.lost()
            self._policies.lost()
            return True
        self._overrides.read(forced, forced_mark)
        self._policies.read(policies, client, mark)
        for (circuit, read_version), stored in zip(watched, versions, strict=True):
            if _lost_since(stored, read_version):
                circuit.keys_lost()
        return False

    def read_all(self, client: Any) -> list[tuple[Any, Reply]]:
        """Read every mirrored circuit (``touch``: in-use circuits stay listed).

        In pipelines of ``READ_BATCH``: each reply then arrives well within
        ``socket_timeout`` however many circuits there are, and the listener thread gets
        the interpreter between batches, so a notice is never held up for a whole read.
        """
        circuits = list(self._store.circuits.values())
        batches = (
            [(c.keys, c.script_args("touch")) for c in circuits[start : start + READ_BATCH]]
            for start in range(0, len(circuits), READ_BATCH)
        )  # each made when it is sent
        errors: list[Exception] = []
        parsed: list[tuple[Any, Reply]] = []
        bad: list[tuple[Any, str]] = []
        done = 0
        with closing(eval_batches(client, batches)) as replied:
            for replies in replied:
                for circuit, raw in zip(circuits[done : done + len(replies)], replies, strict=True):
                    if isinstance(raw, Exception):
                        errors.append(raw)
                        bad.append((circuit, self._store.health.describe(raw)))
                        continue
                    try:
                        parsed.append((circuit, Reply.parse(raw)))
                    except BadReply as exc:
                        bad.append((circuit, str(exc)))
                done += len(replies)
                time.sleep(0)  # let the listener apply what arrived meanwhile
        outage = [e for e in errors if isinstance(e, STORAGE_ERRORS) and not _is_data_error(e)]
        if outage:
            raise outage[0]  # a lost connection or node: the store is down, not one circuit's data
        if errors and len(errors) == len(circuits):
            raise errors[0]  # the store refuses the script for everyone (no grant, out of memory)
        for circuit, why in bad:
            self._store.health.bad_data(circuit.service, why)
        return parsed

    def sync(self, client: Any) -> None:
        """One round: probe, detect a data loss, re-read the mirrors if needed; recover if degraded."""
        store = self._store
        on_thread = threading.current_thread().name == self.thread_name  # not initialize()'s round
        if self.check_epoch(client):
            self._full_needed = True
            lost = True
            store.lost.clear()  # all of it: reported once, as such
        else:
            lost = False
            for service in list(store.lost):
                override = self._overrides.circuit_lost(service)
                store.health.circuit_lost(service, override is not None)
                self._full_needed = True  # the fleet's view of it is read afresh
        if on_thread and self._stop.is_set():
            return  # closed meanwhile: a closed backend writes nothing (another may own the store now)
        if self._policies.pending:
            self._policies.restore(client)
        if lost or self._overrides.pending:
            restored = self._overrides.restore(self._circuit_for, everything=lost)
            if lost:
                store.health.data_lost(restored)
        for circuit in list(store.circuits.values()):
            if circuit.owed:
                circuit.settle_owed(client)  # trials that ended while Redis did not answer
        now = time.monotonic()
        if not (self._full_needed or store.health.degraded or now >= self._next_full):
            self.read_done.set()
            return
        self._full_needed = False
        self._next_full = now + max(store.refresh_interval, store.meta_ttl_seconds / 3)
        parsed = self.read_all(client)
        if _epoch(client.get(store.keys.epoch)) != self.epoch:
            # Emptied while we read: those reads may show a forced circuit closed. The
            # next round (now) reports the loss and restores before reading again.
            self.resync_soon()
            return
        store.health.recover()  # before applying: mirrors then follow Redis again
        for circuit, reply in parsed:
            circuit.apply(reply)
        for circuit in list(store.circuits.values()):
            circuit.rejoin()  # one first used during the outage asks Redis on its next call
        if not self._full_needed:
            self.read_done.set()

    def refresh(self) -> None:
        """One round; a connection lost during it (the server closed it, during its handshake
        say) costs one more round at once, not an outage: the round's reads are reads, and what
        it writes is written again by the next round anyway until Redis confirms it."""
        try:
            try:
                self.sync(self._store.client())
            except RedisConnectionError:
                self.sync(self._store.client())
        except STORAGE_ERRORS as exc:
            self._full_needed = True
            if is_refusal(exc):
                self._store.health.refused(exc)  # a configuration error: the store is up
            else:
                self._store.failed(exc)

    # -- the thread -------------------------------------------------------------------

    def _run_tasks(self) -> None:
        tasks = self.tasks
        while tasks:
            task = tasks.popleft()
            try:
                task()
            except Exception:  # pragma: no cover - tasks handle their own errors
                self._store.health.listener_failed()

    def _loop(self) -> None:
        interval = self._store.refresh_interval
        next_refresh = time.monotonic() + interval
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_refresh - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._run_tasks()
                if self._resync_now or time.monotonic() >= next_refresh:
                    self._resync_now = False
                    self.refresh()
                    next_refresh = time.monotonic() + interval
            except Exception:  # a bug must not kill the refresher, nor flood the log
                self._store.health.listener_failed()
                next_refresh = time.monotonic() + interval


def _epoch(value: Any) -> str | None:
    """The namespace epoch as read (``None``: the key is missing)."""
    return None if value is None else decode(value)


def _stored_version(client: Any, key: str) -> Any:
    """The version field of a circuit's state hash (``None`` if missing), or the error if the
    key is of the wrong type (that circuit's next script run repairs it)."""
    try:
        return client.hget(key, VERSION_FIELD)
    except ResponseError as exc:
        if not _wrong_type(exc):
            raise
        return exc


def _wrong_type(exc: Exception) -> bool:
    return isinstance(exc, ResponseError) and "WRONGTYPE" in str(exc)


def _lost_since(stored: Any, read_version: int) -> bool:
    """True if a circuit's stored version (``None``: no state hash, or one without it) says its
    keys were lost since its mirror read ``read_version``: versions only grow while the keys
    live. An error (a key of the wrong type) or a version that is not a number is corrupt
    data, which the circuit's next script run repairs: not a loss."""
    if stored is None:
        return True
    if isinstance(stored, Exception):
        return False
    try:
        return int(stored) < read_version
    except ValueError:
        return False
