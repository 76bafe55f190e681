"""The operators' overrides of one namespace: every ``force_open`` and ``disable``, owned here.

An override is recorded twice: in the circuit's own keys (by the script, what calls
obey) and in the namespace's registry hash (``Keys.forced``: service -> override),
which is what survives a data loss: after one, the refresher asks ``restore`` to
write every override again. This module alone reads and writes the registry.

A registry value is ``force_open:<reason>`` or ``disable:<reason>``: what the operator
typed is data after the prefix, so no reason can read as another kind of override.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from ...exceptions import CircuitBackendError, _chain_masked
from ._clients import STORAGE_ERRORS
from ._keys import DISABLED_MARK, PROBE_FIELD
from ._refusals import is_refusal
from ._script import decode

if TYPE_CHECKING:
    from ._circuit import RedisCircuit
    from ._store import Store

__all__ = ["Override", "Overrides"]

_OPS = ("force_open", "disable")


class Override(NamedTuple):
    op: str
    """``force_open`` or ``disable``."""
    reason: str

    def encode(self) -> str:
        return f"{self.op}:{self.reason}"

    @classmethod
    def decode(cls, value: Any) -> Override:
        text = decode(value)
        op, sep, reason = text.partition(":")
        if sep and op in _OPS:
            return cls(op, reason)
        if text.startswith(DISABLED_MARK):  # written by an earlier release
            return cls("disable", text[len(DISABLED_MARK) :])
        return cls("force_open", text)


class Overrides:
    """The namespace's operator overrides, as of the refresher's last round, and their registry."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.known: dict[str, Override] = {}
        """Overrides in the registry as of the last refresh (they outlive a data loss here)."""
        self.pending: dict[str, Override] = {}
        """Overrides to write again after a data loss, until each has been."""
        self._lock = threading.RLock()
        """Held by an operator's change of one override and by each step of a restore: a
        restore never writes an override that an operator changed meanwhile."""
        self._changes = 0
        """Changes this process made to the registry: a read begun before one is stale."""

    @contextmanager
    def changing(self, service: str) -> Iterator[None]:
        """An operator's change of ``service``'s override (registry and circuit keys): a restore
        under way waits for it and, once it is done, forgets what it was about to write for
        ``service`` (a change that failed leaves that in place)."""
        with self._lock:
            yield
            self.pending.pop(service, None)
            if self._store.lost.get(service) is not None:
                self._store.lost[service] = None  # its keys' loss is still reported

    def after_fork(self) -> None:
        """In a forked child: a new lock (another thread of the parent may have held it)."""
        self._lock = threading.RLock()

    def forced_open(self, service: str) -> bool:
        """True if the fleet's registry holds ``service`` forced open (as last read)."""
        known = self.known.get(service)
        return known is not None and known.op == "force_open"

    def record(self, service: str, op: str, reason: str) -> None:
        """Write an operator's override to the registry, or raise ``CircuitBackendError``.

        Called before the circuit's own keys change: an override that is not in the
        registry would not survive a data loss, and the operator must hear it.
        """
        value = Override(op, reason).encode()
        self._write("HSET", service, lambda client: client.hset(self._store.keys.forced, service, value))
        self.known[service] = Override(op, reason)

    def erase(self, service: str) -> None:
        """Remove ``service``'s override from the registry (an operator's reset)."""
        self._write("HDEL", service, lambda client: client.hdel(self._store.keys.forced, service))
        self.known.pop(service, None)

    def _write(self, command: str, service: str, write: Callable[[Any], object]) -> None:
        # Counted before and after: a registry read whose mark was taken while this write was
        # on its way may have reached Redis before it.
        self._changes += 1
        try:
            self._send(command, service, write)
        finally:
            self._changes += 1

    def _send(self, command: str, service: str, write: Callable[[Any], object]) -> None:
        store = self._store
        try:
            write(store.client())
        except STORAGE_ERRORS as exc:
            what = store.health.describe(exc)
            if is_refusal(exc):
                error = CircuitBackendError(
                    f"the Redis user at {store.where} may not run {command} on {store.keys.forced!r}"
                    f" (the operators' registry): {what}; the override of {service!r} was not recorded",
                    service=service,
                )
                raise _chain_masked(error, exc, store.health.secrets.scrub) from error.__cause__
            store.failed(exc)
            error = CircuitBackendError(
                f"cannot record the override of {service!r}: circuit store at {store.where}"
                f" unavailable ({what})",
                service=service,
            )
            raise _chain_masked(error, exc, store.health.secrets.scrub) from error.__cause__

    # -- the refresher's side ---------------------------------------------------------------

    def mark(self) -> int:
        """Taken before the registry is read: ``read`` then knows whether it is stale."""
        return self._changes

    def read(self, raw: dict[Any, Any], mark: int) -> None:
        """The registry as just read (``HGETALL``), unless a restore is under way or this
        process changed it since ``mark`` (the read may miss that change: the next one won't)."""
        with self._lock:
            if self.pending or mark != self._changes:
                return
            names = {decode(k): v for k, v in raw.items()}
            names.pop(PROBE_FIELD, None)  # initialize()'s grant check, under way elsewhere
            self.known = {name: Override.decode(v) for name, v in names.items()}

    def lost(self) -> None:
        """The store lost its data: every override known here is to be written again."""
        with self._lock:
            self.pending.update(self.known)

    def circuit_lost(self, service: str) -> Override | None:
        """``service``'s keys were found lost: the override its mirror held then, if any, is
        to be written again (taken from ``Store.lost``)."""
        with self._lock:
            override = self._store.lost.pop(service, None)
            if override is not None:
                self.pending[service] = override
            return override

    def restore(self, circuit_for: Callable[[str], RedisCircuit], *, everything: bool) -> int:
        """Write every pending override again (after a loss of ``everything``, also those this
        process's mirrors hold).

        Raises the store's error if one could not be restored; it stays pending.
        """
        with self._lock:
            for name, circuit in list(self._store.circuits.items()) if everything else ():
                if name in self.pending:
                    continue
                override = circuit.held_override()
                if override is not None:
                    self.pending[name] = override
        restored = 0
        client = self._store.client()
        for name in list(self.pending):
            with self._lock:
                override = self.pending.get(name)
                if override is None:
                    continue  # an operator changed it meanwhile: theirs stands
                circuit_for(name).restore(override.op, override.reason)
                client.hset(self._store.keys.forced, name, override.encode())
                del self.pending[name]
            restored += 1
        return restored
