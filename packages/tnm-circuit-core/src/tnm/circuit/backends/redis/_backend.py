"""``RedisBackend``: configuration, lifecycle, and the circuits of one namespace.

It builds the parts and hands each the ``Store`` (``_store.py``) and the registry of
operator overrides (``_overrides.py``); nothing below imports this module.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ... import _validate
from ...clock import Clock, SystemClock
from ...events import ListenerList
from ...exceptions import CircuitBackendError, InvalidConfigError, InvalidConfigTypeError, _masked_copy
from ...policies import ServicePolicy
from ._buckets import FLUSHER_THREAD, start_flusher, stop_flusher
from ._circuit import RedisCircuit
from ._clients import STORAGE_ERRORS, aclose_client, close_client
from ._health import StorageHealth
from ._keys import PROBE_FIELD, Keys
from ._listener import Listener
from ._overrides import Overrides
from ._policy_registry import OnChange, PolicyRegistry
from ._refresher import Refresher
from ._refusals import is_refusal, named_grant
from ._script import decode, eval_script
from ._store import Store
from ._urls import Secrets, check_url, parse_target, redact_url, url_secrets

__all__ = ["RedisBackend"]

_STORAGE_MODES = ("local", "reject", "raise")
_OWN_THREADS = (Listener.thread_name, Refresher.thread_name, FLUSHER_THREAD)
"""The backend's background threads (by name: a stopped one is no longer the backend's)."""


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
    Given to ``CircuitBreaker(backend)`` without ``listeners``/``clock``, it takes the
    breaker's, so the breaker's listeners hear every event.
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
        target = None if self._url is None else parse_target(self._url)
        if not isinstance(namespace, str) or not namespace or "{" in namespace or "}" in namespace:
            raise InvalidConfigError(
                "namespace", f"must be a non-empty str without braces, got {namespace!r}"
            )
        self.namespace = namespace
        self.keys = Keys(namespace)
        meta_ttl_seconds = _validate.duration("meta_ttl_seconds", meta_ttl_seconds, allow_zero=False)
        socket_timeout = _validate.duration("socket_timeout", socket_timeout, allow_zero=False)
        refresh_interval = _validate.duration("refresh_interval", refresh_interval, allow_zero=False)
        warn_interval = _validate.duration("warn_interval", warn_interval, allow_zero=True)
        max_connections = _validate.positive_int("max_connections", max_connections)
        if on_storage_error not in _STORAGE_MODES:
            raise InvalidConfigError(
                "on_storage_error", f"must be one of {_STORAGE_MODES}, got {on_storage_error!r}"
            )
        self._own_listeners = listeners is None
        self._own_clock = clock is None
        known_secrets = url_secrets(self._url or "") + _client_secrets(client) + _client_secrets(async_client)
        self.store = Store(
            keys=self.keys,
            target=target,
            client=client,
            async_client=async_client,
            where=redact_url(self._url) if self._url is not None else "a client passed by the application",
            secrets=Secrets(known_secrets),
            clock=clock if clock is not None else SystemClock(),
            listeners=listeners if listeners is not None else ListenerList(),
            on_storage_error=on_storage_error,
            warn_interval=warn_interval,
            meta_ttl_seconds=meta_ttl_seconds,
            socket_timeout=socket_timeout,
            refresh_interval=refresh_interval,
            max_connections=max_connections,
        )
        self.store.submit = self._submit
        self.store.start_threads = self.start_threads
        self.overrides = Overrides(self.store)
        self.policy_overrides = PolicyRegistry(self.store)
        """The namespace's fleet policy overrides (``CircuitBreaker.set_policy(..., fleet=True)``)."""
        self._lock = threading.Lock()
        self.listener, self.refresher = self._threads()
        self._running = False
        self._closing = 0
        """How many ``close()`` calls run now (the refresher's last tasks must not start the
        threads they stop)."""
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _threads(self) -> tuple[Listener, Refresher]:
        refresher = Refresher(self.store, self.overrides, self._handle, self.policy_overrides)
        self.store.resync_soon = refresher.resync_soon
        return Listener(
            self.store, refresher.resync_soon, refresher.read_policies_soon, refresher.resubscribed
        ), refresher

    @property
    def on_policy_override(self) -> OnChange | None:
        """Called with (service, patch or None, unknown fields) when a fleet override changes."""
        return self.policy_overrides.on_change

    @on_policy_override.setter
    def on_policy_override(self, hook: OnChange | None) -> None:
        self.policy_overrides.on_change = hook

    def __repr__(self) -> str:
        return f"RedisBackend({self.describe()!r}, namespace={self.namespace!r})"

    def describe(self) -> str:
        """Where the store is, with every secret masked."""
        return self.store.where

    def use(self, clock: Clock, listeners: ListenerList) -> None:
        """A breaker hands down its clock and listeners: taken unless this backend was given its own.

        Called before the breaker makes any circuit.
        """
        self.store.use(
            clock if self._own_clock else self.store.clock,
            listeners if self._own_listeners else self.store.listeners,
        )

    @property
    def listeners(self) -> ListenerList:
        return self.store.listeners

    @property
    def clock(self) -> Clock:
        return self.store.clock

    @property
    def health(self) -> StorageHealth:
        return self.store.health

    @property
    def circuits(self) -> dict[str, RedisCircuit]:
        return self.store.circuits

    @property
    def on_storage_error(self) -> str:
        return self.store.health.on_storage_error

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and calls are decided without it."""
        return self.store.health.degraded

    @property
    def channel(self) -> str:
        return self.keys.channel

    @property
    def cluster(self) -> bool:
        """True if the store is a Redis Cluster."""
        return self.store.cluster

    @property
    def socket_timeout(self) -> float:
        return self.store.socket_timeout

    @property
    def refresh_interval(self) -> float:
        return self.store.refresh_interval

    @property
    def meta_ttl_seconds(self) -> float:
        return self.store.meta_ttl_seconds

    def client(self) -> Any:
        """The sync client (made on first use)."""
        return self.store.client()

    def aclient(self) -> Any:
        """The async client of the running event loop (one per loop)."""
        return self.store.aclient()

    # -- lifecycle -------------------------------------------------------------------------

    def start_threads(self) -> None:
        """Start the listener and the refresher if they are not running (never blocks).

        ``initialize`` does it; a breaker used without it (a forked worker whose parent
        never initialized it, say) gets them on its first round trip. The backend's own
        threads never do: one that finishes a task after ``close()`` must not start them
        again (they would run, subscribed, for the rest of the process).
        """
        if not self._running:
            if threading.current_thread().name.startswith(_OWN_THREADS):
                return
            with self._lock:  # (held while they start: close() waits for them, then stops them)
                if self._running or self._closing:
                    return  # (close() itself runs the refresher's last tasks)
                self._running = True
                self.listener.start()
                self.refresher.start()
                start_flusher(self.store)  # rate policies' successes (see _buckets.py)

    def _submit(self, task: Any) -> None:
        """Run ``task`` on the refresher thread (never blocks the caller)."""
        self.refresher.submit(task)
        self.start_threads()

    def initialize(self) -> None:
        """Connect, learn the shared state of circuits made so far, start the background threads.

        Raises ``CircuitBackendError`` (a ``CircuitError``) if Redis is unreachable, with
        what Redis said (secrets masked).
        """
        health = self.store.health
        client = self.client()
        try:
            client.ping()
            self._check_grants(client)
            self.store.health.check_eviction(_eviction_policies(client))
            self.refresher.sync(client)
        except STORAGE_ERRORS as exc:
            if is_refusal(exc):
                raise CircuitBackendError(
                    f"the Redis user at {self.describe()} lacks a grant the breaker needs"
                    f"{named_grant(exc, self.keys.channel)}: {health.describe(exc)}"
                    " (docs/production-redis.md lists the grants)"
                ) from None
            raise CircuitBackendError(
                f"cannot reach Redis at {self.describe()}: {health.describe(exc)}"
            ) from _masked_copy(exc, health.secrets.scrub(str(exc)))
        self.start_threads()

    def _check_grants(self, client: Any) -> None:
        """Run every command the breaker needs once, on every kind of key it writes, so that a
        missing ACL grant fails here, named (the script's, then the namespace-wide keys')."""
        keys = self.keys.probe(cluster=self.cluster)
        args = RedisCircuit(self.store, self.overrides, "probe", ServicePolicy()).script_args("probe")
        eval_script(client, keys, args)
        epoch, forced, policies = self.keys.epoch, self.keys.forced, self.keys.policies
        checks: tuple[tuple[str, str, Callable[[], object]], ...] = (
            ("SET", epoch, lambda: client.set(epoch, secrets.token_hex(8), nx=True)),  # kept: the epoch
            ("GET", epoch, lambda: client.get(epoch)),
            ("TYPE", epoch, lambda: client.type(epoch)),
            ("HSET", forced, lambda: client.hset(forced, PROBE_FIELD, "")),
            ("HDEL", forced, lambda: client.hdel(forced, PROBE_FIELD)),
            ("HGETALL", forced, lambda: client.hgetall(forced)),
            ("HGETALL", policies, lambda: client.hgetall(policies)),  # the fleet policy overrides
        )
        for command, key, run in checks:
            try:
                run()
            except STORAGE_ERRORS as exc:
                if is_refusal(exc):
                    raise CircuitBackendError(
                        f"the Redis user at {self.describe()} may not run {command} on {key!r}"
                        f" (+{command.lower()} and access to the key): {self.store.health.describe(exc)}"
                        " (docs/production-redis.md lists the grants)"
                    ) from None
                raise
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.keys.channel)
            pubsub.get_message(timeout=self.socket_timeout)  # the reply: an error if not granted
        finally:
            pubsub.close()

    async def ainitialize(self) -> None:
        await asyncio.to_thread(self.initialize)

    def close(self) -> None:
        with self._lock:
            self._closing += 1
            self._running = False
        try:
            timeout = self.socket_timeout + self.refresh_interval + 1
            self.listener.stop(timeout)
            self.refresher.stop(timeout)
            stop_flusher(self.store, timeout)  # one last flush of counted successes (see _buckets.py)
            client = self.store.take_client()
            if client is not None:
                close_client(client)
        finally:
            with self._lock:
                self._closing -= 1

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
        client = self.store.take_aclient()
        if client is not None:
            await aclose_client(client)

    def after_fork(self) -> None:
        """In a forked child: new connections, new background threads (if they ran)."""
        self._lock = threading.Lock()
        self._closing = 0
        self.store.after_fork()
        self.overrides.after_fork()
        tasks = self.refresher.tasks
        self.listener, self.refresher = self._threads()
        self.refresher.tasks.extend(tasks)
        if self._running:
            self.listener.start()
            self.refresher.start()

    # -- circuits ----------------------------------------------------------------------------

    def circuit(
        self, service: str, policy: ServicePolicy, clock: Clock, listeners: ListenerList
    ) -> RedisCircuit:
        circuits = self.store.circuits
        circuit = circuits.get(service)
        if circuit is None:
            with self._lock:
                circuit = circuits.get(service)
                if circuit is None:
                    circuit = RedisCircuit(self.store, self.overrides, service, policy)
                    if self.store.health.degraded:
                        circuit.start_alone()
                    circuits[service] = circuit
        return circuit

    def _handle(self, service: str) -> RedisCircuit:
        """``service``'s circuit in use here, or a policy-less handle (to restore an override)."""
        return self.store.circuits.get(service) or RedisCircuit(
            self.store, self.overrides, service, ServicePolicy()
        )

    def forget(self, service: str, circuit: RedisCircuit) -> None:
        """Stop mirroring an idle circuit (closed with no failures): its next use reads it again."""
        with self._lock:
            if self.store.circuits.get(service) is circuit:
                del self.store.circuits[service]

    def services(self) -> list[str]:
        """Services with state in this namespace (written by any process), and this process's own.

        Found with ``SCAN`` over the state keys (each stores its exact service name), so
        a name disappears once its keys expired; nothing on the call path keeps a list.
        """
        names = set(self.store.circuits)
        if self.store.health.degraded:
            return sorted(names)
        client = self.client()
        try:
            keys = list(client.scan_iter(match=self.keys.state_pattern, count=500))
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "svc")
            names |= {decode(name) for name in pipe.execute() if name is not None}
        except STORAGE_ERRORS as exc:
            self.store.failed(exc)
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


def _eviction_policies(client: Any) -> set[str]:
    """The ``maxmemory-policy`` of the store's servers, or nothing where CONFIG is not allowed."""
    try:
        reply = client.config_get("maxmemory-policy")
    except Exception:  # refused, renamed, or a managed service: nothing to check
        return set()
    replies = reply.values() if isinstance(reply, dict) and "maxmemory-policy" not in reply else [reply]
    policies = {r.get("maxmemory-policy") for r in replies if isinstance(r, dict)}
    return {decode(p) for p in policies if p is not None}


def _after_fork(ref: weakref.ReferenceType[RedisBackend]) -> None:
    backend = ref()
    if backend is not None:
        backend.after_fork()
