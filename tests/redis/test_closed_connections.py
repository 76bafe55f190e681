"""A connection the server closed costs no outage: redis-py's pool finds most of them when it
hands one out, and the one it cannot see (closed after that check, or during the handshake) is
opened again once. A store that stalls is not asked twice: a timeout is never retried."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tnm.circuit import CircuitBreaker, CircuitState, EventKind
from tnm.circuit.testing import capture_events

from ..redis_server import RedisServer
from .helpers import commands_sent_here, redis_backend

MakeRedisBreaker = Callable[..., CircuitBreaker]


def _close_idle(server: RedisServer, pool: Any, can_read: Callable[..., Any]) -> None:
    """The server closes the pool's idle connections, and they pass the pool's check when handed
    out, as one the server closes just after that check does: the first command on it finds it
    closed. (The other threads' connections are left alone.)"""
    admin = server.client()
    for connection in list(pool._available_connections):
        if hasattr(connection, "_sock"):
            sock = connection._sock
        else:  # an asyncio connection
            sock = connection._writer.transport.get_extra_info("socket")
        host, port = sock.getsockname()[:2]
        admin.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        connection.can_read = can_read


def _never_readable(*_args: Any, **_options: Any) -> bool:
    return False


async def _never_readable_async(*_args: Any, **_options: Any) -> bool:
    return False


def _quiet(app: CircuitBreaker) -> CircuitBreaker:
    """No refresher rounds: what is sent on the pool is the test's own."""
    redis_backend(app).refresher.stop(5)
    return app


class TestAClosedConnection:
    def test_a_failure_on_a_connection_closed_after_the_pools_check_is_counted(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        app = _quiet(make_redis_breaker(max_failures=2))
        app.record_failure("pg", "timeout")
        _close_idle(redis_server, redis_backend(app).store.client().connection_pool, _never_readable)
        with capture_events(app) as events:
            app.record_failure("pg", "timeout")
        assert EventKind.STORAGE_DEGRADED not in [e.kind for e in events]
        assert app.state("pg").state is CircuitState.OPEN
        assert app.state("pg").failures == 2  # counted once: the closed connection ran nothing

    def test_an_async_failure_on_a_connection_closed_after_the_pools_check_is_counted(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        app = _quiet(make_redis_breaker(max_failures=2))

        async def scenario() -> tuple[list[EventKind], CircuitState]:
            try:
                await app.arecord_failure("pg", "timeout")
                pool = redis_backend(app).store.aclient().connection_pool
                _close_idle(redis_server, pool, _never_readable_async)
                with capture_events(app) as events:
                    await app.arecord_failure("pg", "timeout")
                return [e.kind for e in events], (await app.astate("pg")).state
            finally:
                await app.aclose()  # (its connections belong to this loop)

        kinds, state = asyncio.run(scenario())
        assert EventKind.STORAGE_DEGRADED not in kinds
        assert state is CircuitState.OPEN

    def test_a_refresher_round_on_a_closed_connection_reads_all(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        app = _quiet(make_redis_breaker(max_failures=2))
        app.record_failure("pg", "timeout")
        _close_idle(redis_server, redis_backend(app).store.client().connection_pool, _never_readable)
        with capture_events(app) as events:
            redis_backend(app).refresher.refresh()
        assert EventKind.STORAGE_DEGRADED not in [e.kind for e in events]
        assert not redis_backend(app).store.health.degraded


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
