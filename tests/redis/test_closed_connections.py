"""A connection the server closed: before a run went out whole it costs nothing (the run goes
out on another connection, once); after, the run is never sent again (it may have run, and a
failure must not count twice), so the process decides alone until Redis answers. A store that
stalls is not asked twice either."""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis.asyncio.connection
import redis.connection
from redis.exceptions import ConnectionError as RedisConnectionError

from tnm.circuit import CircuitBreaker, CircuitState, EventKind
from tnm.circuit.testing import capture_events

from ..redis_server import RedisServer
from .helpers import commands_sent_here, redis_backend

MakeRedisBreaker = Callable[..., CircuitBreaker]

CUT = "Connection closed by server."
"""What redis-py raises when the server closes a connection under it."""


def _quiet(app: CircuitBreaker) -> CircuitBreaker:
    """No refresher rounds: what is sent on the pool is the test's own."""
    redis_backend(app).refresher.stop(5)
    return app


@contextmanager
def _next_handshake_cut(monkeypatch: pytest.MonkeyPatch, module: Any) -> Iterator[list[int]]:
    """The next connection this thread opens (in ``module``: redis-py's sync or asyncio
    connections) is closed by the server during its handshake, as ``CLIENT KILL`` or a proxy's
    restart would. Yields the handshakes cut (one at most)."""
    cut: list[int] = []
    caller = threading.current_thread()
    connect = module.AbstractConnection.connect
    is_async = asyncio.iscoroutinefunction(connect)

    def cuts(self: Any) -> bool:
        opening = getattr(self, "_sock", None) is None and getattr(self, "_reader", None) is None
        if not cut and opening and threading.current_thread() is caller:
            cut.append(1)
            return True
        return False

    if is_async:

        async def aconnect(self: Any) -> Any:
            if cuts(self):
                raise RedisConnectionError(CUT)
            return await connect(self)

        monkeypatch.setattr(module.AbstractConnection, "connect", aconnect)
    else:

        def sconnect(self: Any) -> Any:
            if cuts(self):
                raise RedisConnectionError(CUT)
            return connect(self)

        monkeypatch.setattr(module.AbstractConnection, "connect", sconnect)
    yield cut


class TestBeforeTheRunWentOut:
    def test_a_failure_whose_new_connection_was_cut_mid_handshake_is_counted(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        app = _quiet(make_redis_breaker(max_failures=2))
        app.record_failure("pg", "timeout")
        redis_backend(app).store.client().connection_pool.disconnect()  # the next run opens one
        with _next_handshake_cut(monkeypatch, redis.connection) as cut, capture_events(app) as events:
            app.record_failure("pg", "timeout")
        assert cut == [1]
        assert EventKind.STORAGE_DEGRADED not in [e.kind for e in events]
        assert app.state("pg").state is CircuitState.OPEN

    def test_an_async_failure_whose_new_connection_was_cut_mid_handshake_is_counted(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        app = _quiet(make_redis_breaker(max_failures=2))

        async def scenario() -> tuple[list[int], list[EventKind], CircuitState]:
            try:
                await app.arecord_failure("pg", "timeout")
                await redis_backend(app).store.aclient().connection_pool.disconnect()
                with (
                    _next_handshake_cut(monkeypatch, redis.asyncio.connection) as cut,
                    capture_events(app) as events,
                ):
                    await app.arecord_failure("pg", "timeout")
                return cut, [e.kind for e in events], (await app.astate("pg")).state
            finally:
                await app.aclose()  # (its connections belong to this loop)

        cut, kinds, state = asyncio.run(scenario())
        assert cut == [1]
        assert EventKind.STORAGE_DEGRADED not in kinds
        assert state is CircuitState.OPEN

    def test_a_run_that_could_not_be_written_is_written_on_a_new_connection(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The socket refuses the write (the server reset it): nothing whole reached Redis, so the
        run goes out again, once, and counts once."""
        app = _quiet(make_redis_breaker(max_failures=3))
        app.record_failure("pg", "timeout")
        send = redis.connection.AbstractConnection.send_packed_command
        refused: list[int] = []

        def reset_once(self: Any, command: Any, check_health: bool = True) -> None:
            if not refused:
                refused.append(1)
                self.disconnect()  # as redis-py does when the write fails
                raise RedisConnectionError("Error 104 while writing to socket. Connection reset by peer.")
            send(self, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", reset_once)
        app.record_failure("pg", "timeout")
        monkeypatch.undo()
        assert refused == [1]
        assert app.state("pg").failures == 2  # counted, once

    def test_an_async_run_the_socket_refused_is_written_on_a_new_connection(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The asyncio stream refuses the run's write (the server reset the socket: asyncio
        closes the stream at once): nothing reached Redis, so it goes out again on a new
        connection, once, and counts once."""
        app = _quiet(make_redis_breaker(max_failures=3))
        write = asyncio.selector_events._SelectorSocketTransport.write  # type: ignore[attr-defined]
        refused: list[bytes] = []

        def reset_once(self: Any, data: Any) -> None:
            if not refused and b"EVALSHA" in bytes(data)[:18]:
                refused.append(bytes(data)[:18])
                self.abort()  # as asyncio does when the socket's send fails
                return
            write(self, data)

        async def scenario() -> int:
            try:
                await app.arecord_failure("pg", "timeout")
                with monkeypatch.context() as patch:
                    patch.setattr(asyncio.selector_events._SelectorSocketTransport, "write", reset_once)  # type: ignore[attr-defined]
                    await app.arecord_failure("pg", "timeout")
                return (await app.astate("pg")).failures
            finally:
                await app.aclose()

        assert asyncio.run(scenario()) == 2  # counted, once
        assert refused == [b"*37\r\n$7\r\nEVALSHA\r\n"]

    def test_a_refresher_round_whose_connection_was_cut_mid_handshake_is_no_outage(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The round that met it runs again at once (this is how a CI run once lost its store)."""
        app = _quiet(make_redis_breaker(max_failures=2))
        app.record_failure("pg", "timeout")
        redis_backend(app).store.client().connection_pool.disconnect()
        with _next_handshake_cut(monkeypatch, redis.connection) as cut, capture_events(app) as events:
            redis_backend(app).refresher.refresh()
        assert cut == [1]
        assert EventKind.STORAGE_DEGRADED not in [e.kind for e in events]
        assert not redis_backend(app).store.health.degraded


@contextmanager
def _closed_after_the_pools_check(
    server: RedisServer, pool: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The server closes each connection ``pool`` hands this thread just after the pool checked
    it (the race no check can close)."""
    admin = server.client()
    caller = threading.current_thread()
    get_connection = redis.connection.ConnectionPool.get_connection

    def closed_after_check(self: Any, *args: Any, **options: Any) -> Any:
        connection = get_connection(self, *args, **options)
        if self is pool and threading.current_thread() is caller:
            host, port = connection._sock.getsockname()[:2]
            admin.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        return connection

    with monkeypatch.context() as patch:
        patch.setattr(redis.connection.ConnectionPool, "get_connection", closed_after_check)
        yield


class TestAfterTheRunWentOut:
    def test_a_run_whose_reply_is_lost_is_never_sent_again(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Written whole, then the connection is found closed: Redis may have run it (here it did
        not), so it is not sent again; the process decides alone and counts the failure once."""
        app = _quiet(make_redis_breaker(max_failures=2))
        app.record_failure("pg", "timeout")
        with (
            _closed_after_the_pools_check(
                redis_server, redis_backend(app).store.client().connection_pool, monkeypatch
            ),
            commands_sent_here(monkeypatch) as sent,
            capture_events(app) as events,
        ):
            app.record_failure("pg", "timeout")
        runs = [s[:18] for s in sent if b"EVALSHA" in s[:18]]  # (not the test's own CLIENT KILL)
        assert runs == [b"*37\r\n$7\r\nEVALSHA\r\n"]
        assert EventKind.STORAGE_DEGRADED in [e.kind for e in events]


class TestAStall:
    def test_a_run_the_store_does_not_answer_is_sent_once(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A stalled store holds the caller for one ``socket_timeout``, not one per retry."""
        app = _quiet(make_redis_breaker(max_failures=5, backend_options={"socket_timeout": 0.3}))
        app.record_failure("pg", "timeout")
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            with commands_sent_here(monkeypatch) as sent:
                app.record_failure("pg", "timeout")
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert redis_backend(app).store.health.degraded
        assert [s[:18] for s in sent] == [b"*37\r\n$7\r\nEVALSHA\r\n"]
