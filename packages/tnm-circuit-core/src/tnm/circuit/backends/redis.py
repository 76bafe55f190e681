"""The Redis backend: one shared, exact view of each circuit for every process and host.

Design, in order of what matters:

* **No I/O on the healthy path.** Each process mirrors every circuit's ``state``,
  ``dirty`` and ``open_until`` in memory; the breaker's call path reads only those.
  A background thread keeps the mirrors fresh from Redis pub/sub, and re-reads every
  circuit each ``refresh_interval`` in case notifications were lost.
* **Exact under concurrency.** Every change is one Lua script (``_lua/circuit.lua``)
  run atomically by Redis, with time from Redis ``TIME`` so hosts with skewed clocks
  agree. A failure costs one round trip, a rejection while open none (the deadline
  is mirrored), a half-open trial one (to take its permit).
* **Redis trouble never reaches the caller.** When a command fails the backend
  degrades: calls are decided by per-process circuits under the same policies (or,
  with ``on_storage_error="reject"`` / ``"raise"``, refused), listeners hear
  ``storage_degraded``, a warning is logged at most once per ``warn_interval``, and
  the background thread reconnects with backoff, then resumes the shared state.
* **Async never blocks the loop**: async call paths use ``redis.asyncio``.
* **Secrets stay secret**: passwords are masked in every repr, log line and error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

from .. import _validate
from .._counter import AtomicCounter
from ..clock import Clock, SystemClock
from ..events import CircuitEvent, EventKind, ListenerList
from ..exceptions import (
    CircuitBackendError,
    CircuitError,
    CircuitOpenError,
    InvalidConfigError,
    InvalidConfigTypeError,
)
from ..policies import ServicePolicy
from ..state import (
    CLOSED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    REJECT,
    CircuitSnapshot,
    CircuitState,
    Transition,
)
from .local import LocalCircuit

try:
    import redis
    import redis.asyncio as aioredis
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the redis backend needs redis-py: pip install 'tnm-circuit-core[redis]'") from exc

__all__ = ["RedisBackend", "RedisCircuit", "redact_url"]

logger = logging.getLogger("tnm.circuit")

_SCRIPT = resources.files("tnm.circuit").joinpath("_lua/circuit.lua").read_text(encoding="utf-8")
_STORAGE_MODES = ("local", "reject", "raise")
_SCHEMES = ("redis", "rediss", "unix")
_STATES = {s.value: s for s in CircuitState}


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log or show)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise InvalidConfigTypeError("redis_url", f"must be a str, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidConfigError("redis_url", f"{redact_url(url)} is malformed ({exc})") from None
    if parts.scheme not in _SCHEMES:
        raise InvalidConfigError(
            "redis_url", f"{redact_url(url)}: scheme must be one of {', '.join(_SCHEMES)}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise InvalidConfigError("redis_url", f"{redact_url(url)} has no host")
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise InvalidConfigError("redis_url", f"{redact_url(url)}: database must be a number, got {db!r}")
    del port
    return url


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _tag(service: str) -> str:
    # Braces would end the Redis Cluster hash tag early; escape them (and %) so the
    # key still names exactly one service. The name itself is stored verbatim.
    return quote(service, safe="".join(chr(c) for c in range(32, 127) if chr(c) not in "{}%"))


class RedisCircuit:
    """A service's circuit stored in Redis, mirrored in this process."""

    io_free = False

    def __init__(self, backend: RedisBackend, service: str, policy: ServicePolicy) -> None:
        self.service = service
        self.policy = policy
        self.state: CircuitState = CLOSED
        self.dirty = False
        self.open_until = 0.0
        self._backend = backend
        self._clock = backend.clock
        self._monotonic = backend.clock.monotonic
        self._listeners = backend.listeners
        self.keys = backend.keys_for(service)
        ms = 1000.0
        self._args: list[Any] = [
            policy.max_failures,
            int(policy.window_seconds * ms),
            int(policy.open_seconds * ms),  # type: ignore[operator]
            policy.backoff_multiplier,
            int(policy.max_open_seconds * ms),  # type: ignore[operator]
            policy.half_open_max_calls,
            policy.success_threshold,
            int(policy.trial_timeout_seconds * ms),
            int(backend.meta_ttl_seconds * ms),
            backend.channel,
            service,
        ]
        self._seen_ms = -math.inf
        self._last: tuple[str, float] | None = None  # (reason, server ms)
        self._failures = 0
        self._reopenings = 0
        self._permits = 0
        self._earliest_permit_ms: float | None = None
        self._now_ms = 0.0
        self._shown_max_failures = policy.max_failures
        self._shown_window = policy.window_seconds
        self.successes = AtomicCounter()
        """Successful calls seen while a listener was registered (for metrics)."""
        # Decides calls while Redis is unreachable (same policy, this process only).
        self.fallback = LocalCircuit(service, policy, backend.clock, backend.listeners)

    def __repr__(self) -> str:
        return f"<RedisCircuit {self.service!r} {self.state.value}>"

    # -- mirror -------------------------------------------------------------------

    def _script_args(self, op: str, token: int = 0, reason: str = "") -> list[Any]:
        return [op, self._backend.now_arg(), *self._args, token, reason]

    def apply(self, state: str, open_until: Any, failures: Any, now_ms: Any) -> None:
        """Update the mirror from a script reply or a pub/sub message (newest wins)."""
        now_ms = float(now_ms)
        if now_ms < self._seen_ms:
            return
        self._seen_ms = now_ms
        new_state = _STATES[state]
        self._now_ms = now_ms
        self._failures = int(failures)
        if new_state is OPEN:
            self.open_until = self._monotonic() + (float(open_until) - now_ms) / 1000.0
        elif new_state is FORCED_OPEN:
            self.open_until = math.inf
        else:
            self.open_until = 0.0
        self.dirty = new_state is CLOSED and self._failures > 0
        self.state = new_state

    def _apply_reply(self, reply: Sequence[Any]) -> tuple[int, list[Transition]]:
        """Mirror a script's reply; return its result and the transitions it made.

        Transitions come from the script itself (not from comparing mirrors), so the
        process that caused a change reports it exactly once, even if the pub/sub
        notification of that change reached the mirror first.
        """
        state = _decode(reply[0])
        self.apply(state, reply[1], reply[2], reply[3])
        self._reopenings = int(reply[5])
        last_reason, last_ms = _decode(reply[6]), _decode(reply[7])
        self._last = (last_reason, float(last_ms)) if last_ms != "" else None
        self._permits = int(reply[8])
        deadline = _decode(reply[9])
        self._earliest_permit_ms = float(deadline) if deadline != "" else None
        self._shown_max_failures = int(reply[11])
        self._shown_window = int(reply[12]) / 1000.0
        path = [_STATES[_decode(s)] for s in reply[10]]
        return int(reply[4]), list(itertools.pairwise(path))

    def _copy_fallback(self) -> None:
        """While the store is down: mirror the per-process circuit, or refuse every call."""
        if self._backend.on_storage_error == "local":
            fb = self.fallback
            self.state, self.dirty, self.open_until = fb.state, fb.dirty, fb.open_until
        else:
            self.state, self.dirty, self.open_until = FORCED_OPEN, False, math.inf

    def _notify(self, kind: EventKind | None, changes: list[Transition], reason: str | None = None) -> None:
        self._listeners.notify(kind, self.service, self.state, changes, self._clock.time, reason)

    # -- one operation, sync and async ----------------------------------------------

    def _run(self, op: str, token: int = 0, reason: str = "", kind: EventKind | None = None) -> int | None:
        """Run ``op`` in Redis; ``None`` if the store is unavailable (the caller falls back)."""
        backend = self._backend
        if backend.degraded:
            return None
        try:
            reply = backend.eval(self.keys, self._script_args(op, token, reason))
        except (RedisError, CircuitBackendError) as exc:
            backend.mark_degraded(exc)
            return None
        result, changes = self._apply_reply(reply)
        if op == "read":
            changes = []  # a read stores nothing; the next write makes (and reports) the change
        if changes or kind is not None:
            self._notify(kind, changes, reason or None)
        return result

    async def _arun(
        self, op: str, token: int = 0, reason: str = "", kind: EventKind | None = None
    ) -> int | None:
        backend = self._backend
        if backend.degraded:
            return None
        try:
            reply = await backend.aeval(self.keys, self._script_args(op, token, reason))
        except (RedisError, CircuitBackendError) as exc:
            backend.mark_degraded(exc)
            return None
        result, changes = self._apply_reply(reply)
        if op == "read":
            changes = []
        if changes or kind is not None:
            self._notify(kind, changes, reason or None)
        return result

    def _degraded_acquire(self) -> int:
        if self._backend.on_storage_error != "local":
            return REJECT
        token = self.fallback.acquire()
        self._copy_fallback()
        return token

    # -- the call path -----------------------------------------------------------------

    def acquire(self) -> int:
        if self.state is not HALF_OPEN and self._monotonic() < self.open_until:
            return REJECT  # open with the deadline ahead: known locally, no round trip
        token = self._run("acquire")
        return self._degraded_acquire() if token is None else token

    async def aacquire(self) -> int:
        if self.state is not HALF_OPEN and self._monotonic() < self.open_until:
            return REJECT
        token = await self._arun("acquire")
        return self._degraded_acquire() if token is None else token

    def on_success(self, token: int) -> None:
        self.successes.increment()
        if not token and not self.dirty and self.state is CLOSED:
            if self._listeners.success_callbacks:
                self._notify(EventKind.SUCCESS, [])
            return
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        if self._run("success", token, kind=kind) is None:
            self.fallback.on_success(token)
            self._copy_fallback()

    async def aon_success(self, token: int) -> None:
        self.successes.increment()
        if not token and not self.dirty and self.state is CLOSED:
            if self._listeners.success_callbacks:
                self._notify(EventKind.SUCCESS, [])
            return
        kind = EventKind.SUCCESS if self._listeners.success_callbacks else None
        if await self._arun("success", token, kind=kind) is None:
            self.fallback.on_success(token)
            self._copy_fallback()

    def on_failure(self, token: int, reason: str) -> None:
        if self._run("failure", token, reason, EventKind.FAILURE) is None:
            self.fallback.on_failure(token, reason)
            self._copy_fallback()

    async def aon_failure(self, token: int, reason: str) -> None:
        if await self._arun("failure", token, reason, EventKind.FAILURE) is None:
            self.fallback.on_failure(token, reason)
            self._copy_fallback()

    def on_ignored(self, token: int) -> None:
        self.on_release(token)
        if self._listeners.callbacks:
            self._notify(EventKind.IGNORED, [])

    async def aon_ignored(self, token: int) -> None:
        self.on_ignored(token)

    def on_release(self, token: int) -> None:
        # Never blocks (it also runs in cancelled coroutines): handed to the backend's
        # worker thread. If that fails, the permit's deadline frees it anyway.
        if token > 0:
            self.fallback.on_release(token)
            self._backend.submit(lambda: self._run("release", token))

    def on_rejected(self, fallback: bool) -> None:
        if self._listeners.callbacks:
            self._notify(EventKind.FALLBACK if fallback else EventKind.REJECTED, [])

    # -- inspection and manual control --------------------------------------------------

    def _known_availability(self) -> bool | None:
        """Availability decided from the mirror alone, or ``None`` if Redis must be asked."""
        if self.state is CLOSED:
            return True
        if self.state is not HALF_OPEN and self._monotonic() < self.open_until:
            return False
        return None

    def _availability_after_read(self, read: int | None) -> bool:
        if read is None:
            if self._backend.on_storage_error != "local":
                return False
            return self.fallback.is_available()
        if self.state is CLOSED:
            return True
        if self.state is HALF_OPEN:
            return self._permits < self.policy.half_open_max_calls
        return False

    def is_available(self) -> bool:
        known = self._known_availability()
        return known if known is not None else self._availability_after_read(self._run("read"))

    async def ais_available(self) -> bool:
        known = self._known_availability()
        return known if known is not None else self._availability_after_read(await self._arun("read"))

    def snapshot(self) -> CircuitSnapshot:
        if self._run("read") is None:
            return self.fallback.snapshot()
        return self._snapshot()

    async def asnapshot(self) -> CircuitSnapshot:
        if await self._arun("read") is None:
            return self.fallback.snapshot()
        return self._snapshot()

    def _snapshot(self) -> CircuitSnapshot:
        return CircuitSnapshot(
            service=self.service,
            state=self.state,
            failures=self._failures,
            max_failures=self._shown_max_failures,
            window_seconds=self._shown_window,
            retry_after=self._retry_after(),
            last_failure=self._last_failure(),
            trials_in_flight=self._permits,
            reopenings=self._reopenings,
        )

    def _retry_after(self) -> float | None:
        state = self.state
        if state is FORCED_OPEN:
            return None
        if state is OPEN:
            return max(0.0, self.open_until - self._monotonic())
        full = state is HALF_OPEN and self._permits >= self.policy.half_open_max_calls
        if full and self._earliest_permit_ms is not None:
            return max(0.0, (self._earliest_permit_ms - self._now_ms) / 1000.0)
        return 0.0

    def _last_failure(self) -> dict[str, Any] | None:
        last = self._last
        if last is None:
            return None
        return {"reason": last[0], "ts": self._backend.wall_ts(last[1])}

    def open_error(self) -> CircuitError:
        backend = self._backend
        if backend.degraded and backend.on_storage_error == "raise":
            return CircuitBackendError(
                f"circuit store unavailable for {self.service!r}: {backend.describe()}"
            )
        if backend.degraded and backend.on_storage_error == "local":
            return self.fallback.open_error()
        failures = self.policy.max_failures if self.state is OPEN else self._failures
        return CircuitOpenError(
            self.service,
            None if backend.degraded else self._retry_after(),
            self._last_failure(),
            self.state,
            failures,
            self.policy.max_failures,
            self.policy.window_seconds,
        )

    def last_failure(self) -> dict[str, Any] | None:
        if self._run("read") is None:
            return self.fallback.last_failure()
        return self._last_failure()

    def force_open(self, reason: str) -> None:
        if self._run("force_open", reason=reason) is None:
            raise CircuitBackendError(
                f"cannot force {self.service!r} open: circuit store unavailable ({self._backend.describe()})"
            )

    def reset(self) -> None:
        if self._run("reset") is None:
            raise CircuitBackendError(
                f"cannot reset {self.service!r}: circuit store unavailable ({self._backend.describe()})"
            )
        self.fallback.reset()


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBackend:
    """Circuits shared through Redis by every process using the same ``namespace``.

    Give ``redis_url`` (``redis://``, ``rediss://`` for TLS, ``unix://``; ACL user and
    password in the URL) or ready clients (``client``, and optionally
    ``async_client``). ``socket_timeout`` bounds every Redis command.
    ``on_storage_error`` says what calls do while Redis is unreachable: ``"local"``
    (default: per-process circuits under the same policies), ``"reject"`` (fail
    closed) or ``"raise"`` (``CircuitBackendError``).
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
        self._url = None if redis_url is None else _check_url(redis_url)
        if not isinstance(namespace, str) or not namespace or "{" in namespace or "}" in namespace:
            raise InvalidConfigError(
                "namespace", f"must be a non-empty str without braces, got {namespace!r}"
            )
        self.namespace = namespace
        self.meta_ttl_seconds = _validate.duration("meta_ttl_seconds", meta_ttl_seconds, allow_zero=False)
        self.socket_timeout = _validate.duration("socket_timeout", socket_timeout, allow_zero=False)
        self.refresh_interval = _validate.duration("refresh_interval", refresh_interval, allow_zero=False)
        self.warn_interval = _validate.duration("warn_interval", warn_interval, allow_zero=True)
        self.max_connections = _validate.positive_int("max_connections", max_connections)
        if on_storage_error not in _STORAGE_MODES:
            raise InvalidConfigError(
                "on_storage_error", f"must be one of {_STORAGE_MODES}, got {on_storage_error!r}"
            )
        self.on_storage_error = on_storage_error
        self.listeners = listeners if listeners is not None else ListenerList()
        self.clock: Clock = clock if clock is not None else SystemClock()
        # With the system clock, time comes from Redis TIME (hosts agree); an injected
        # clock (tests) is used instead so that tests move time.
        self._server_time = isinstance(self.clock, SystemClock)
        self.channel = f"{namespace}:events"
        self._given_client = client
        self._given_async_client = async_client
        self._client: Any = client
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._sha: str | None = None
        self._circuits: dict[str, RedisCircuit] = {}
        self._lock = threading.Lock()
        self.degraded = False
        self._last_warning = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tasks: deque[Callable[[], object]] = deque()
        self._pid = os.getpid()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def __repr__(self) -> str:
        return f"RedisBackend({self.describe()!r}, namespace={self.namespace!r})"

    def describe(self) -> str:
        """Where the store is, with any password masked."""
        if self._url is not None:
            return redact_url(self._url)
        return "a client passed by the application"

    # -- time ---------------------------------------------------------------------------

    def now_arg(self) -> str:
        return "" if self._server_time else str(round(self.clock.monotonic() * 1000))

    def wall_ts(self, ms: float) -> float:
        """Epoch seconds for a time recorded by the script."""
        if self._server_time:
            return ms / 1000.0
        return self.clock.time() - (self.clock.monotonic() - ms / 1000.0)

    # -- clients ------------------------------------------------------------------------

    def _make_client(self) -> Any:
        if self._given_client is not None:
            return self._given_client
        return redis.Redis.from_url(
            self._url,  # type: ignore[arg-type]
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            health_check_interval=0,
        )

    def _aclient(self) -> Any:
        if self._given_async_client is not None:
            return self._given_async_client
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            if self._url is None:
                raise CircuitBackendError("async call paths need async_client= when client= is given")
            # A bounded pool: a burst of concurrent failures waits for a connection
            # (asynchronously) instead of opening hundreds of them.
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url,
                max_connections=self.max_connections,
                timeout=self.socket_timeout,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_timeout,
            )
            client = aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool
            self._aclients[loop] = client
        return client

    def eval(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self._client
        if client is None:
            self.initialize()
            client = self._client
        try:
            return client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(_SCRIPT, len(keys), *keys, *args)

    async def aeval(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self._aclient()
        if self._sha is None:
            self._sha = await client.script_load(_SCRIPT)
        try:
            return await client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(_SCRIPT, len(keys), *keys, *args)

    # -- lifecycle ------------------------------------------------------------------------

    def initialize(self) -> None:
        """Connect, load the script and start the background listener.

        Raises ``CircuitBackendError`` (a ``CircuitError``) if Redis is unreachable.
        """
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            try:
                self._client.ping()
                self._sha = self._client.script_load(_SCRIPT)
            except RedisError as exc:
                raise CircuitBackendError(
                    f"cannot reach Redis at {self.describe()}: {type(exc).__name__}"
                ) from None
            self.degraded = False
            self._start_thread()

    async def ainitialize(self) -> None:
        await asyncio.to_thread(self.initialize)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.socket_timeout + self.refresh_interval + 1)
        self._thread = None
        if self._client is not None and self._given_client is None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def _start_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._background, name="tnm-circuit-redis", daemon=True)
        self._thread.start()

    def after_fork(self) -> None:
        """In a forked child: new connections, a new listener thread (if one ran)."""
        had_thread = self._thread is not None
        self._pid = os.getpid()
        self._thread = None
        self._lock = threading.Lock()
        self._tasks = deque()
        self._aclients = weakref.WeakKeyDictionary()
        if self._given_client is None and self._client is not None:
            self._client = self._make_client()
        if had_thread and not self._stop.is_set():
            self._start_thread()

    # -- circuits ---------------------------------------------------------------------------

    def circuit(
        self, service: str, policy: ServicePolicy, clock: Clock, listeners: ListenerList
    ) -> RedisCircuit:
        circuit = self._circuits.get(service)
        if circuit is None:
            with self._lock:
                circuit = self._circuits.get(service)
                if circuit is None:
                    circuit = RedisCircuit(self, service, policy)
                    self._circuits[service] = circuit
        return circuit

    def keys_for(self, service: str) -> tuple[str, str, str]:
        """State, failures and permits keys of ``service`` (one Cluster slot per service)."""
        prefix = f"{self.namespace}:{{{_tag(service)}}}"
        return (f"{prefix}:state", f"{prefix}:failures", f"{prefix}:permits")

    def services(self) -> list[str]:
        """Services with state in this namespace (written by any process), and this process's own.

        Found with ``SCAN`` over the state keys (each stores its exact service name), so
        a name disappears once its keys expired; nothing on the call path keeps a list.
        """
        names = set(self._circuits)
        if self._client is None or self.degraded:
            return sorted(names)
        pattern = _glob_escape(f"{self.namespace}:{{") + "*}:state"
        try:
            keys = list(self._client.scan_iter(match=pattern, count=500))
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "svc")
            names |= {_decode(name) for name in pipe.execute() if name is not None}
        except RedisError as exc:
            self.mark_degraded(exc)
        return sorted(names)

    # -- degradation -------------------------------------------------------------------------

    def mark_degraded(self, exc: BaseException) -> None:
        first = not self.degraded
        self.degraded = True
        now = time.monotonic()
        if now - self._last_warning >= self.warn_interval:
            self._last_warning = now
            logger.warning(
                "circuit store at %s unavailable (%s); deciding calls %s until it is back",
                self.describe(),
                type(exc).__name__,
                {"local": "per process", "reject": "by rejecting them", "raise": "by raising"}[
                    self.on_storage_error
                ],
            )
        if first:
            for circuit in list(self._circuits.values()):
                circuit._copy_fallback()
            self._storage_event(EventKind.STORAGE_DEGRADED, type(exc).__name__)

    def _recovered(self) -> None:
        if not self.degraded:
            return
        self.degraded = False
        logger.warning("circuit store at %s is back; shared state resumes", self.describe())
        self._storage_event(EventKind.STORAGE_RECOVERED, None)

    def _storage_event(self, kind: EventKind, reason: str | None) -> None:
        if self.listeners.callbacks:
            self.listeners.emit(CircuitEvent(kind, "*", None, self.clock.time(), reason=reason))

    # -- background work ---------------------------------------------------------------------

    def submit(self, task: Callable[[], object]) -> None:
        """Run ``task`` on the background thread (never blocks the caller)."""
        self._tasks.append(task)
        if self._thread is None and self._client is not None:
            self._start_thread()

    def _run_tasks(self) -> None:
        tasks = self._tasks
        while tasks:
            task = tasks.popleft()
            try:
                task()
            except Exception:  # pragma: no cover - tasks handle their own errors
                logger.exception("tnm-circuit background task failed")

    def resync(self) -> None:
        """Re-read every mirrored circuit from Redis in one round trip."""
        circuits = list(self._circuits.values())
        if not circuits:
            return
        pipe = self._client.pipeline(transaction=False)
        for circuit in circuits:
            pipe.evalsha(self._sha, 3, *circuit.keys, *circuit._script_args("read"))
        for circuit, reply in zip(circuits, pipe.execute(), strict=True):
            circuit._apply_reply(reply)

    def _on_message(self, data: Any) -> None:
        try:
            service, state, open_until, failures, now_ms = json.loads(data)
        except (ValueError, TypeError):
            return
        circuit = self._circuits.get(service)
        if circuit is not None and not self.degraded:
            circuit.apply(state, open_until, failures, now_ms)

    def _background(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            pubsub = None
            try:
                client = self._client
                if client is None:
                    return
                client.ping()
                # (Re)load the script: a restarted server has forgotten it.
                self._sha = client.script_load(_SCRIPT)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.resync()
                self._recovered()
                backoff = 0.05
                last_sync = time.monotonic()
                while not self._stop.is_set():
                    self._run_tasks()
                    message = pubsub.get_message(timeout=min(0.1, self.refresh_interval))
                    if message is not None and message.get("type") == "message":
                        self._on_message(message["data"])
                    if time.monotonic() - last_sync >= self.refresh_interval:
                        self.resync()
                        last_sync = time.monotonic()
            except RedisError as exc:
                self.mark_degraded(exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # pragma: no cover - a bug must not kill the listener silently
                logger.exception("tnm-circuit Redis listener failed; restarting")
                self._stop.wait(backoff)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
        self._run_tasks()


def _after_fork(ref: weakref.ReferenceType[RedisBackend]) -> None:
    backend = ref()
    if backend is not None:
        backend.after_fork()
