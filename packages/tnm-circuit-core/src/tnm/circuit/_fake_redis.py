"""The Redis backend on an in-process fakeredis server, for tests (``testing.fake_redis_breaker``).

The backend runs unchanged, with its real Lua script: it is given ready fakeredis
clients (``client=``, ``async_client=``), the way an application may give it redis-py
clients. What differs from a real server is handled here, never in the backend:

* **Notices arrive before the call returns.** On a real server another process hears
  of a change within about a millisecond, on its listener thread. A test cannot wait
  for "about": after every script run, the helper publishes a marker behind the
  script's notice on every channel the fake server's breakers listen to, and returns
  only once each of those listeners has asked for its next message after the marker,
  that is, once it has applied everything published before it. So a trip made
  through one breaker is in every other breaker's mirror when the call that made it
  returns. ``fake_redis_breaker`` itself returns once its listener subscribed, and a
  breaker initialized again after ``close()`` (an app's shutdown, then startup) is
  waited for until its listener subscribed again.
* **close() is quick.** A listener waits for messages in slices of 5 ms here, so
  closing a breaker takes about that, not the listener's whole poll interval.
* **One async client per event loop.** fakeredis async connections belong to the loop
  that made them; the backend uses the one client it is given on every loop, so the
  client given here hands each running loop its own fakeredis client on the same server.

Every wait is bounded (``BARRIER_TIMEOUT``): a listener that does not answer in time
(a breaker closed mid-call, a stalled thread) delays a call by at most that, and the
change then reaches it as it would on a real server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .breaker import CircuitBreaker
from .exceptions import CircuitBackendError, InvalidConfigError

_MISSING = (
    "fake_redis_breaker and make_breaker(shared=True) need redis-py and fakeredis with Lua:"
    " pip install 'tnm-circuit-core[testing]'"
)
try:  # the [testing] extra brings all three: name it, not [redis], whichever is missing
    import fakeredis
    from redis.exceptions import RedisError

    from .backends.redis._listener import Listener
except ImportError as exc:
    raise ImportError(_MISSING) from exc
if importlib.util.find_spec("lupa") is None:  # fakeredis runs Lua scripts with it
    raise ImportError(_MISSING)

if TYPE_CHECKING:
    from fakeredis import FakeServer

__all__ = ["BARRIER_TIMEOUT", "FakeAsyncClient", "FakeClient", "fake_redis_breaker", "new_server"]

BARRIER_TIMEOUT = 5.0
"""Seconds a call waits at most for the other breakers' listeners to hear of its change."""

_LISTENER_THREAD = Listener.thread_name
"""The name of the backend's listener thread."""

_POLL_SLICE = 0.005
"""Seconds a listener's wait for a message lasts at most here."""

_MARKER = b"\x00tnm-circuit-testing-barrier:"
"""Prefix of the markers: never a notice (those are JSON), never handed to a listener."""

# Arguments that fake_redis_breaker sets itself.
_OWN_ARGUMENTS = ("backend", "redis_url", "client", "async_client")


class _Hub:
    """The subscribers of one fake server, and the markers that tell when they caught up."""

    def __init__(self) -> None:
        # No reference to the server: the hubs are kept per server in a weak mapping.
        self.cond = threading.Condition()
        self.sent = 0
        self.subscribers: set[_PubSub] = set()
        self.expected: set[FakeClient] = set()
        """Clients whose breaker restarts its listener (used again after close()): not subscribed yet."""
        self._numbers = itertools.count(1)

    def join(self, pubsub: _PubSub) -> None:
        with self.cond:
            pubsub.seen = self.sent  # markers sent before it subscribed never reach it
            self.subscribers.add(pubsub)
            pubsub.owner.listened = True
            self.expected.discard(pubsub.owner)
            self.cond.notify_all()

    def expect(self, owner: FakeClient) -> None:
        """``owner`` sends a command: if its listener stopped, the backend is starting it again."""
        with self.cond:
            if owner.listened and not any(p.owner is owner for p in self.subscribers):
                self.expected.add(owner)

    def leave(self, pubsub: _PubSub) -> None:
        with self.cond:
            self.subscribers.discard(pubsub)
            self.cond.notify_all()

    def saw(self, pubsub: _PubSub, number: int) -> None:
        with self.cond:
            if number > pubsub.seen:
                pubsub.seen = number
                self.cond.notify_all()

    def barrier(self, publisher: Any, owner: FakeClient) -> None:
        """Return once every other breaker's listener applied what was published before now (bounded).

        ``publisher`` is the caller's sync client, on the hub's server. The listener of
        the caller's own breaker (``owner``) is not waited for: that breaker applies the
        script's reply itself, and the same notice later changes nothing.
        """
        with self.cond:
            if not self.cond.wait_for(lambda: self.expected <= {owner}, timeout=BARRIER_TIMEOUT):
                self.expected &= {owner}  # they did not subscribe in time: wait no more for them
            waiting = {p for p in self.subscribers if p.owner is not owner}
            if not waiting:
                return
            number = self.sent = next(self._numbers)
            channels = set().union(*(p.channels for p in waiting))
            marker = _MARKER + str(number).encode()
            try:
                for channel in channels:
                    publisher.publish(channel, marker)
            except RedisError:
                return  # the test took the fake server down: the backend sees to that
            self.cond.wait_for(
                lambda: all(p.seen >= number or p not in self.subscribers for p in waiting),
                timeout=BARRIER_TIMEOUT,
            )

    def forget_all(self) -> None:
        """In a forked child: the parent's listener threads do not exist here."""
        self.cond = threading.Condition()
        self.subscribers = set()
        self.expected = set()


_hubs: weakref.WeakKeyDictionary[FakeServer, _Hub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def _hub(server: FakeServer) -> _Hub:
    with _hubs_lock:
        hub = _hubs.get(server)
        if hub is None:
            hub = _hubs[server] = _Hub()
        return hub


def _after_fork() -> None:
    global _hubs_lock
    _hubs_lock = threading.Lock()
    for hub in list(_hubs.values()):
        hub.forget_all()


os.register_at_fork(after_in_child=_after_fork)


class _PubSub:
    """A fakeredis pubsub that swallows markers and reports them to the hub.

    A listener reads what arrived together, then reads the circuits those notices name,
    then asks for more: so a marker is reported to the hub at the listener's next ask
    after the one that read it, when every notice before it was applied.
    """

    def __init__(self, inner: Any, hub: _Hub, owner: FakeClient) -> None:
        self._inner = inner
        self._hub = hub
        self.owner = owner
        self.channels: set[Any] = set()
        self.seen = 0
        self._marker = 0  # the newest marker read, reported at the next ask

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def subscribe(self, *channels: Any, **handlers: Any) -> Any:
        result = self._inner.subscribe(*channels, **handlers)
        self.channels.update(channels, handlers)
        # Only the backend's listener thread is a listener: initialize() also subscribes
        # once, briefly, to check its grant on the channel.
        if threading.current_thread().name == _LISTENER_THREAD:
            self._hub.join(self)
            self.owner.subscribed.set()
        return result

    def get_message(self, *args: Any, timeout: float | None = 0.0, **kwargs: Any) -> Any:
        # Waits in short slices (a listener asks again after an empty answer): a
        # breaker's close() then returns within one slice instead of the listener's
        # whole poll interval, which adds up over a test suite.
        if self._marker:
            self._hub.saw(self, self._marker)
            self._marker = 0
        timeout = _POLL_SLICE if timeout is None else min(timeout, _POLL_SLICE)
        while True:
            message = self._inner.get_message(*args, timeout=timeout, **kwargs)
            data = None if message is None else message.get("data")
            if not (isinstance(data, bytes) and data.startswith(_MARKER)):
                return message
            self._marker = max(self._marker, int(data[len(_MARKER) :]))
            timeout = 0.0  # the wait is over: something arrived; look for what follows it

    def close(self) -> None:
        self._hub.leave(self)
        self._inner.close()


class FakeClient:
    """A fakeredis client whose script runs return once every listener heard their notices."""

    def __init__(self, server: FakeServer) -> None:
        self._inner: Any = fakeredis.FakeRedis(server=server)
        self._hub = _hub(server)
        self.subscribed = threading.Event()
        self.listened = False  # a listener of this client subscribed once

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return "FakeClient(an in-process fakeredis server)"

    def ping(self, *args: Any, **kwargs: Any) -> Any:
        self._hub.expect(self)
        return self._inner.ping(*args, **kwargs)

    def evalsha(self, *args: Any) -> Any:
        self._hub.expect(self)
        result = self._inner.evalsha(*args)
        self.barrier()
        return result

    def eval(self, *args: Any) -> Any:
        self._hub.expect(self)
        result = self._inner.eval(*args)
        self.barrier()
        return result

    def barrier(self) -> None:
        self._hub.barrier(self._inner, self)

    def pubsub(self, **kwargs: Any) -> _PubSub:
        return _PubSub(self._inner.pubsub(**kwargs), self._hub, self)


class FakeAsyncClient:
    """Async script runs on the same fake server: one fakeredis client per running loop.

    ``owner`` is the breaker's sync ``FakeClient``: markers go out through it, from a
    worker thread, so that waiting for the listeners never blocks the loop.
    """

    def __init__(self, server: FakeServer, owner: FakeClient) -> None:
        self._server = server
        self._hub = _hub(server)
        self._owner = owner
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return "FakeAsyncClient(an in-process fakeredis server)"

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = fakeredis.FakeAsyncRedis(server=self._server)
        return client

    def __getattr__(self, name: str) -> Any:
        # Any other command, on the running loop's client; outside a loop there is none.
        try:
            return getattr(self._client(), name)
        except RuntimeError:
            raise AttributeError(name) from None

    async def evalsha(self, *args: Any) -> Any:
        self._hub.expect(self._owner)
        result = await self._client().evalsha(*args)
        await self._barrier()
        return result

    async def eval(self, *args: Any) -> Any:
        self._hub.expect(self._owner)
        result = await self._client().eval(*args)
        await self._barrier()
        return result

    async def _barrier(self) -> None:
        hub = self._hub
        if hub.expected - {self._owner} or any(p.owner is not self._owner for p in list(hub.subscribers)):
            await asyncio.to_thread(self._owner.barrier)


def new_server() -> FakeServer:
    """A fresh, empty fake Redis server."""
    return fakeredis.FakeServer()


def fake_redis_breaker(*, server: FakeServer | None = None, **kwargs: Any) -> CircuitBreaker:
    """See ``tnm.circuit.testing.fake_redis_breaker``."""
    for name in _OWN_ARGUMENTS:
        if name in kwargs:
            raise InvalidConfigError(
                name, "fake_redis_breaker builds the redis backend on a fake server itself; leave it out"
            )
    if server is None:
        server = fakeredis.FakeServer()
    elif not isinstance(server, fakeredis.FakeServer):
        raise InvalidConfigError("server", f"must be a fakeredis.FakeServer, got {server!r}")
    client = FakeClient(server)
    breaker = CircuitBreaker("redis", client=client, async_client=FakeAsyncClient(server, client), **kwargs)
    breaker.initialize()
    if not client.subscribed.wait(BARRIER_TIMEOUT):
        breaker.close()
        raise CircuitBackendError(f"the fake Redis listener did not subscribe within {BARRIER_TIMEOUT} s")
    return breaker
