"""``Store``: what every part of the Redis backend shares, handed down instead of the backend.

One object per backend holds the connections (a sync client, one asyncio client per
event loop), the key names, the server's time as last seen, the storage health, the
live mirrors of this process (``circuits``), and the two hooks into the background
threads (``submit`` a task, ``start_threads``). The listener, the refresher, the
success flusher and every ``RedisCircuit`` take this object and nothing above it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...clock import Clock, SystemClock
from ...events import ListenerList
from ..local import _say_deciding_alone
from ._clients import is_cluster, make_async_client, make_client
from ._derive import async_client_like
from ._health import StorageHealth
from ._keys import Keys
from ._reporters import new_reporter_id
from ._urls import Secrets, Target

if TYPE_CHECKING:
    from ._circuit import RedisCircuit
    from ._overrides import Override

__all__ = ["Store"]


def _nothing() -> None:
    """Until the backend binds its threads."""


class Store:
    """Connections, keys, server time, health and this process's mirrors of one namespace."""

    def __init__(
        self,
        *,
        keys: Keys,
        target: Target | None,
        client: Any,
        async_client: Any,
        where: str,
        secrets: Secrets,
        clock: Clock,
        listeners: ListenerList,
        on_storage_error: str,
        warn_interval: float,
        meta_ttl_seconds: float,
        socket_timeout: float,
        refresh_interval: float,
        max_connections: int,
    ) -> None:
        self.keys = keys
        self.where = where
        self.meta_ttl_seconds = meta_ttl_seconds
        self.socket_timeout = socket_timeout
        self.refresh_interval = refresh_interval
        self.max_connections = max_connections
        self.circuits: dict[str, RedisCircuit] = {}
        """This process's mirrors, by service (the listener and the refresher keep them fresh)."""
        self.lost: dict[str, Override | None] = {}
        """Circuits whose keys vanished while they held a state, with the operator's override they
        held (if any): the refresher reports them and writes the override again."""
        self.health = StorageHealth(
            where, on_storage_error, warn_interval, listeners, clock, secrets, self._start_alone
        )
        self._target = target
        self._given_client = client
        self._given_async_client = async_client
        self._client: Any = client
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self.lock = threading.Lock()
        self._said_alone = False
        self.reporter = new_reporter_id()
        """This backend's id in the fleet's reporters (``_reporters.py``)."""
        self.cluster = (
            is_cluster(client) if client is not None else target is not None and target.kind == "cluster"
        )
        self._server_ms = 0.0
        self._server_seen_at = -1.0
        self.submit: Callable[[Callable[[], object]], None] = lambda task: None
        """Run a task on the refresher thread (never blocks the caller)."""
        self.start_threads: Callable[[], None] = _nothing
        """Start the background threads if they are not running (never blocks)."""
        self.resync_soon: Callable[[], None] = _nothing
        """Ask the refresher for a round now (never blocks)."""
        self.use(clock, listeners)

    def use(self, clock: Clock, listeners: ListenerList) -> None:
        """The clock and the event listeners every part uses (a breaker hands down its own)."""
        self.clock = clock
        self.listeners = listeners
        self.health.clock = clock
        self.health.listeners = listeners
        # With the system clock, time comes from Redis TIME (hosts agree); an injected
        # clock (tests) is used instead so that tests move time.
        self.server_time = isinstance(clock, SystemClock)

    # -- clients ------------------------------------------------------------------------

    def client(self) -> Any:
        """The sync client (made on first use)."""
        client = self._client
        if client is None:
            with self.lock:
                if self._client is None:
                    assert self._target is not None
                    self._client = make_client(self._target, self.socket_timeout)
                client = self._client
        return client

    def aclient(self) -> Any:
        """The async client of the running event loop (one per loop)."""
        if self._given_async_client is not None:
            return self._given_async_client
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            if self._target is None:
                # From the sync client's settings; an InvalidConfigError if they cannot be carried over.
                client = async_client_like(
                    self._given_client, max_connections=self.max_connections, timeout=self.socket_timeout
                )
            else:
                client = make_async_client(self._target, self.socket_timeout, self.max_connections)
            self._aclients[loop] = client
        return client

    def take_client(self) -> Any:
        """The sync client this store made, if any, now the caller's to close."""
        client, made = self._client, self._given_client is None
        if made:
            self._client = None
        return client if made else None

    def take_aclient(self) -> Any:
        """The running loop's asyncio client this store made, if any, now the caller's to close."""
        return self._aclients.pop(asyncio.get_running_loop(), None)

    def after_fork(self) -> None:
        """In a forked child: new locks and connections (the parent's are the parent's)."""
        self.lock = threading.Lock()
        self.reporter = new_reporter_id()  # the child's calls are its own
        self._aclients = weakref.WeakKeyDictionary()
        for circuit in self.circuits.values():
            circuit.after_fork()
        if self._given_client is None and self._client is not None:
            assert self._target is not None
            self._client = make_client(self._target, self.socket_timeout)

    # -- time ---------------------------------------------------------------------------

    def now_arg(self) -> str:
        return "" if self.server_time else str(round(self.clock.monotonic() * 1000))

    def to_monotonic(self, ms: float, now_ms: float) -> float:
        """This process's monotonic time for a deadline ``ms`` that the script computed at ``now_ms``."""
        if self.server_time:
            return self.clock.monotonic() + (ms - now_ms) / 1000.0
        return ms / 1000.0  # an injected clock stamped the script's times itself: exact

    def wall_ts(self, ms: float) -> float:
        """Epoch seconds for a time recorded by the script."""
        if self.server_time:
            return ms / 1000.0
        return self.clock.time() - (self.clock.monotonic() - ms / 1000.0)

    def saw_server_time(self, ms: float, *, server_clock: bool = False) -> None:
        if server_clock and not self.server_time:
            return  # an injected clock stamps the script's times, not Redis TIME
        if ms >= self._server_ms:
            self._server_ms = ms
            self._server_seen_at = time.monotonic()

    def server_ms_now(self) -> float:
        """The store's current time in the script's milliseconds, as best known here."""
        if not self.server_time:
            return self.clock.monotonic() * 1000.0
        if self._server_seen_at < 0:
            return float("inf")  # nothing seen yet
        return self._server_ms + (time.monotonic() - self._server_seen_at) * 1000.0

    # -- health -------------------------------------------------------------------------

    def failed(self, exc: BaseException) -> None:
        """A command failed for want of the store: decide calls without it until it is back."""
        self.health.degrade(exc)

    def _start_alone(self) -> None:
        said = False
        for circuit in list(self.circuits.values()):
            circuit.start_alone()
            if not said and not self._said_alone:
                said = _say_deciding_alone(circuit.policy, f"Redis at {self.where} is unreachable")
        self._said_alone = self._said_alone or said
