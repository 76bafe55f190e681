"""``RedisBackend``: configuration, connections, lifecycle and the circuits of one namespace."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import weakref
from typing import Any

from redis.exceptions import NoPermissionError

from ... import _validate
from ...clock import Clock, SystemClock
from ...events import ListenerList
from ...exceptions import CircuitBackendError, InvalidConfigError, InvalidConfigTypeError, _masked_copy
from ...policies import ServicePolicy
from ._buckets import start_flusher, stop_flusher
from ._circuit import RedisCircuit
from ._clients import STORAGE_ERRORS, aclose_client, close_client, is_cluster, make_async_client, make_client
from ._derive import async_client_like
from ._health import StorageHealth
from ._keys import DISABLED_MARK, Keys
from ._listener import Listener
from ._refresher import Refresher
from ._script import SCRIPT, BadReply, Reply, decode, eval_script
from ._urls import Secrets, check_url, parse_target, redact_url, url_secrets

__all__ = ["RedisBackend"]

_STORAGE_MODES = ("local", "reject", "raise")


def _client_secrets(client: Any) -> list[str]:
    """Passwords inside a ready client's connection settings (to keep them out of messages)."""
    found: list[str] = []
    for candidate in (
        client,
        getattr(client, "connection_pool", None),
        getattr(client, "nodes_manager", None),
    ):
        kwargs = getattr(candidate, "connection_kwargs", None)
        if isinstance(kwargs, dict):
            found += [v for k, v in kwargs.items() if "password" in k and isinstance(v, str)]
    return found


class RedisBackend:
    """Circuits shared through Redis by every process using the same ``namespace``.

    Give ``redis_url`` (``redis://``, ``rediss://`` for TLS, ``unix://``; ACL user and
    password in the URL) or ready clients (``client``, and optionally
    ``async_client``; without it, async calls use an asyncio client built from
    ``client``'s connection settings, or raise ``InvalidConfigError`` if they
    cannot be carried over, as for a cluster or sentinel client).
    ``socket_timeout`` bounds every Redis command.
    ``on_storage_error`` says what calls do while Redis is unreachable: ``"local"``
    (default: per-process circuits that start from the last shared state),
    ``"reject"`` (fail closed) or ``"raise"`` (``CircuitBackendError``).
    ``refresh_interval`` bounds how stale a mirror can get if a notice is lost, and
    how soon the backend notices that Redis is back.
    """

    name = "redis"

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        namespace: str = "tnm:circuit",
        meta_ttl_seconds: float = 300,
        listeners: ListenerList | None = None,
        clock: Clock | None = None,
        client: Any = None,
        async_client: Any = None,
        socket_timeout: float = 0.5,
        refresh_interval: float = 1.0,
        on_storage_error: str = "local",
        warn_interval: float = 30.0,
        max_connections: int = 10,
    ) -> None:
        if client is None and redis_url is None:
            raise InvalidConfigError("redis_url", "the redis backend needs redis_url= or client=")
        for field, given in (("client", client), ("async_client", async_client)):
            if given is not None and not callable(getattr(given, "evalsha", None)):
                raise InvalidConfigTypeError(
                    field, f"must be a redis-py client (pass a URL as redis_url=), got {type(given).__name__}"
                )
        self._url = None if redis_url is None else check_url(redis_url)
        self._target = None if self._url is None else parse_target(self._url)
        if not isinstance(namespace, str) or not namespace or "{" in namespace or "}" in namespace:
            raise InvalidConfigError(
                "namespace", f"must be a non-empty str without braces, got {namespace!r}"
            )
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.meta_ttl_seconds = _validate.duration("meta_ttl_seconds", meta_ttl_seconds, allow_zero=False)
        self.socket_timeout = _validate.duration("socket_timeout", socket_timeout, allow_zero=False)
        self.refresh_interval = _validate.duration("refresh_interval", refresh_interval, allow_zero=False)
        warn_interval = _validate.duration("warn_interval", warn_interval, allow_zero=True)
        self.max_connections = _validate.positive_int("max_connections", max_connections)
        if on_storage_error not in _STORAGE_MODES:
            raise InvalidConfigError(
                "on_storage_error", f"must be one of {_STORAGE_MODES}, got {on_storage_error!r}"
            )
        self.listeners = listeners if listeners is not None else ListenerList()
        self.clock: Clock = clock if clock is not None else SystemClock()
        # With the system clock, time comes from Redis TIME (hosts agree); an injected
        # clock (tests) is used instead so that tests move time.
        self._server_time = isinstance(self.clock, SystemClock)
        self._server_ms = 0.0
        self._server_seen_at = -1.0
        secrets = url_secrets(self._url or "") + _client_secrets(client) + _client_secrets(async_client)
        self.health = StorageHealth(
            self.describe(),
            on_storage_error,
            warn_interval,
            self.listeners,
            self.clock,
            Secrets(secrets),
            self._start_alone,
        )
        self._given_client = client
        self._given_async_client = async_client
        self._client: Any = client
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self.circuits: dict[str, RedisCircuit] = {}
        self._lock = threading.Lock()
        self.listener = Listener(self)
        self.refresher = Refresher(self)
        self._running = False
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def __repr__(self) -> str:
        return f"RedisBackend({self.describe()!r}, namespace={self.namespace!r})"

    def describe(self) -> str:
        """Where the store is, with every secret masked."""
        if self._url is not None:
            return redact_url(self._url)
        return "a client passed by the application"

    @property
    def on_storage_error(self) -> str:
        return self.health.on_storage_error

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and calls are decided without it."""
        return self.health.degraded

    @property
    def channel(self) -> str:
        return self.keys.channel

    # -- time ------------------------------------------------------------------------------

    def now_arg(self) -> str:
        return "" if self._server_time else str(round(self.clock.monotonic() * 1000))

    def to_monotonic(self, ms: float, now_ms: float) -> float:
        """This process's monotonic time for a deadline ``ms`` that the script computed at ``now_ms``."""
        if self._server_time:
            return self.clock.monotonic() + (ms - now_ms) / 1000.0
        return ms / 1000.0  # an injected clock stamped the script's times itself: exact

    def wall_ts(self, ms: float) -> float:
        """Epoch seconds for a time recorded by the script."""
        if self._server_time:
            return ms / 1000.0
        return self.clock.time() - (self.clock.monotonic() - ms / 1000.0)

    def saw_server_time(self, ms: float, *, server_clock: bool = False) -> None:
        if server_clock and not self._server_time:
            return  # an injected clock stamps the script's times, not Redis TIME
        if ms >= self._server_ms:
            self._server_ms = ms
            self._server_seen_at = time.monotonic()

    def server_ms_now(self) -> float:
        """The store's current time in the script's milliseconds, as best known here."""
        if not self._server_time:
            return self.clock.monotonic() * 1000.0
        if self._server_seen_at < 0:
            return float("inf")  # nothing seen yet: no basis to call any notice "future"
        return self._server_ms + (time.monotonic() - self._server_seen_at) * 1000.0

    # -- clients ---------------------------------------------------------------------------

    def _make_client(self) -> Any:
        if self._given_client is not None:
            return self._given_client
        assert self._target is not None
        return make_client(self._target, self.socket_timeout)

    @property
    def cluster(self) -> bool:
        """True if the store is a Redis Cluster."""
        if self._given_client is not None:
            return is_cluster(self._given_client)
        return self._target is not None and self._target.kind == "cluster"

    def client(self) -> Any:
        """The sync client (made on first use)."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
                client = self._client
        return client

    def start_threads(self) -> None:
        """Start the listener and the refresher if they are not running (never blocks).

        ``initialize`` does it; a breaker used without it (a forked worker whose parent
        never initialized it, say) gets them on its first round trip.
        """
        if not self._running:
            with self._lock:
                if self._running:
                    return
                self._running = True
            self.listener.start()
            self.refresher.start()
            start_flusher(self)  # rate policies' successes (see _buckets.py)

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
                self._aclients[loop] = client
                return client
            client = make_async_client(self._target, self.socket_timeout, self.max_connections)
            self._aclients[loop] = client
        return client

    # -- lifecycle -------------------------------------------------------------------------

    def initialize(self) -> None:
        """Connect, learn the shared state of circuits made so far, start the background threads.

        Raises ``CircuitBackendError`` (a ``CircuitError``) if Redis is unreachable, with
        what Redis said (secrets masked).
        """
        client = self.client()
        try:
            client.ping()
            self._check_grants(client)
            self.refresher.sync(client)
        except STORAGE_ERRORS as exc:
            if _is_permission_error(exc):
                raise CircuitBackendError(
                    f"the Redis user at {self.describe()} lacks a grant the breaker needs"
                    f"{_named_grant(exc, self.keys.channel)}: {self.health.describe(exc)}"
                    " (docs/production-redis.md lists the grants)"
                ) from None
            raise CircuitBackendError(
                f"cannot reach Redis at {self.describe()}: {self.health.describe(exc)}"
            ) from _masked_copy(exc, self.health.secrets.scrub(str(exc)))
        self.start_threads()

    def _check_grants(self, client: Any) -> None:
        """Run every command the breaker needs once, so a missing ACL grant fails here, named."""
        probe = RedisCircuit(self, "__tnm_probe__", ServicePolicy())
        eval_script(client, probe.keys, probe.script_args("probe"))
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.keys.channel)
            pubsub.get_message(timeout=self.socket_timeout)  # the reply: an error if not granted
        finally:
            pubsub.close()

    async def ainitialize(self) -> None:
        await asyncio.to_thread(self.initialize)

    def close(self) -> None:
        self._running = False
        timeout = self.socket_timeout + self.refresh_interval + 1
        self.listener.stop(timeout)
        self.refresher.stop(timeout)
        stop_flusher(self, timeout)  # one last flush of counted successes (see _buckets.py)
        if self._client is not None and self._given_client is None:
            close_client(self._client)
            self._client = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await aclose_client(client)

    def after_fork(self) -> None:
        """In a forked child: new connections, new background threads (if they ran)."""
        self._lock = threading.Lock()
        self._aclients = weakref.WeakKeyDictionary()
        if self._given_client is None and self._client is not None:
            self._client = self._make_client()
        self.listener = Listener(self)
        tasks = self.refresher.tasks
        self.refresher = Refresher(self)
        self.refresher.tasks.extend(tasks)
        if self._running:
            self.listener.start()
            self.refresher.start()

    # -- circuits ----------------------------------------------------------------------------

    def circuit(
        self, service: str, policy: ServicePolicy, clock: Clock, listeners: ListenerList
    ) -> RedisCircuit:
        circuit = self.circuits.get(service)
        if circuit is None:
            with self._lock:
                circuit = self.circuits.get(service)
                if circuit is None:
                    circuit = RedisCircuit(self, service, policy)
                    if self.health.degraded:
                        circuit.start_alone()
                    self.circuits[service] = circuit
        return circuit

    def forget(self, service: str, circuit: RedisCircuit) -> None:
        """Stop mirroring an idle circuit (closed with no failures): its next use reads it again."""
        with self._lock:
            if self.circuits.get(service) is circuit:
                del self.circuits[service]

    def services(self) -> list[str]:
        """Services with state in this namespace (written by any process), and this process's own.

        Found with ``SCAN`` over the state keys (each stores its exact service name), so
        a name disappears once its keys expired; nothing on the call path keeps a list.
        """
        names = set(self.circuits)
        if self.health.degraded:
            return sorted(names)
        client = self.client()
        try:
            keys = list(client.scan_iter(match=self.keys.state_pattern, count=500))
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "svc")
            names |= {decode(name) for name in pipe.execute() if name is not None}
        except STORAGE_ERRORS as exc:
            self.storage_failed(exc)
        return sorted(names)

    def namespace_used(self) -> bool:
        """True if a breaker ever used this namespace here (its epoch, its forced-open
        registry or a circuit's state exists). Read only: an operator's look leaves no trace."""
        client = self.client()
        try:
            if client.exists(self.keys.epoch) or client.exists(self.keys.forced):
                return True
            return next(iter(client.scan_iter(match=self.keys.state_pattern, count=500)), None) is not None
        except STORAGE_ERRORS as exc:
            raise CircuitBackendError(
                f"cannot reach Redis at {self.describe()}: {self.health.describe(exc)}"
            ) from None

    # -- forced-open registry ------------------------------------------------------------------

    def remember_forced(self, service: str, reason: str) -> None:
        """Record an operator's override namespace-wide, so a data loss cannot erase it."""
        try:
            self.client().hset(self.keys.forced, service, reason)
        except STORAGE_ERRORS as exc:
            self.storage_failed(exc)

    def forget_forced(self, service: str) -> None:
        try:
            self.client().hdel(self.keys.forced, service)
        except STORAGE_ERRORS as exc:
            self.storage_failed(exc)

    def restore_forced(self, service: str, reason: str) -> None:
        """Force ``service`` open (or disable it) again after a data loss (a policy-less handle if
        not in use here). ``reason`` is the registry's value."""
        circuit = self.circuits.get(service) or RedisCircuit(self, service, ServicePolicy())
        op, shown = (
            ("disable", reason[len(DISABLED_MARK) :])
            if reason.startswith(DISABLED_MARK)
            else ("force_open", reason)
        )
        raw = eval_script(self.client(), circuit.keys, circuit.script_args(op, reason=shown))
        try:
            circuit.apply(Reply.parse(raw))
        except BadReply as exc:
            self.health.bad_data(service, str(exc))
        self.client().hset(self.keys.forced, service, reason)

    # -- failures and background work ----------------------------------------------------------

    def storage_failed(self, exc: BaseException) -> None:
        self.health.degrade(exc)

    def _start_alone(self) -> None:
        for circuit in list(self.circuits.values()):
            circuit.start_alone()

    def submit(self, task: Any) -> None:
        """Run ``task`` on the refresher thread (never blocks the caller)."""
        self.refresher.submit(task)
        self.start_threads()


def _is_permission_error(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, NoPermissionError) or any(
        marker in text
        for marker in ("NOPERM", "no permissions", "can't run this command", "can't access", "can't publish")
    )


def _named_grant(exc: BaseException, channel: str) -> str:
    """Which grant is missing, where Redis's message does not say it plainly.

    Inside a script Redis names only the script's line: the command is read from it.
    """
    text = str(exc)
    if "channel" in text:
        return f" (the channel {channel!r}: &{channel})"
    line = re.search(r"@user_script:(\d+)", text)
    if line is not None:
        lines = SCRIPT.splitlines()
        number = int(line.group(1))
        command = re.search(r"redis\.call\('(\w+)'", lines[number - 1]) if 0 < number <= len(lines) else None
        if command is not None:
            what = "a key under the namespace" if "access" in text else f"+{command.group(1).lower()}"
            return f" ({what}, used by the script's {command.group(1)})"
    return ""


def _after_fork(ref: weakref.ReferenceType[RedisBackend]) -> None:
    backend = ref()
    if backend is not None:
        backend.after_fork()
