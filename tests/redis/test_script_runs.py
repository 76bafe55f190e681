"""How script runs reach Redis: packed by hiredis on redis-py's own connections, full reads in
pipelined batches. The replies, the errors and the connections' state are redis-py's own."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import Callable, Iterator
from typing import Any

import hiredis
import pytest
import redis
import redis.asyncio.connection
import redis.connection
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

from tnm.circuit import CircuitBreaker, CircuitState, EventKind, ServicePolicy
from tnm.circuit.backends.redis import _packing, _pipelines
from tnm.circuit.backends.redis._pipelines import eval_batches
from tnm.circuit.backends.redis._refresher import READ_BATCH
from tnm.circuit.backends.redis._script import SHA_BYTES, BadReply, Reply, eval_script, parse_message
from tnm.circuit.testing import capture_events

from ..redis_server import RedisServer
from .helpers import commands_sent_here, redis_backend

MakeRedisBreaker = Callable[..., CircuitBreaker]


def _without_hiredis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_packing, "_pack", None)


def _kill_clients(server: RedisServer) -> None:
    """The server closes every ordinary connection but the admin's (as after a timeout or a
    proxy's restart): the breaker's pooled connections are dead when next used."""
    server.client().execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


EVALSHA_HEAD = b"*37\r\n$7\r\nEVALSHA\r\n"
"""The first bytes of a script run as sent."""


@contextlib.contextmanager
def _async_sends_spied(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """What goes through redis-py's asyncio ``send_packed_command`` inside the block (the first
    bytes of each command)."""
    send = redis.asyncio.connection.AbstractConnection.send_packed_command
    sent: list[bytes] = []

    async def spied(self: Any, command: Any, *args: Any, **options: Any) -> None:
        sent.append(b"".join(command)[:18])
        await send(self, command, *args, **options)

    with monkeypatch.context() as patch:
        patch.setattr(redis.asyncio.connection.AbstractConnection, "send_packed_command", spied)
        yield sent


class TestPackedRuns:
    def test_a_packed_run_replies_as_redis_pys_own(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        app = make_redis_breaker(max_failures=5)
        for _ in range(2):
            app.record_failure("pg", "timeout")
        circuit = redis_backend(app).store.circuits["pg"]
        client = redis_backend(app).store.client()
        assert _packing.packs_own(client)
        packed = eval_script(client, circuit.keys, circuit.script_args("read"))
        _without_hiredis(monkeypatch)
        assert not _packing.packs_own(client)
        plain = eval_script(client, circuit.keys, circuit.script_args("read"))
        assert packed == plain
        assert packed[:3:2] == [b"closed", 2]  # closed, two failures in the window

    def test_without_hiredis_a_failure_goes_through_redis_py(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _without_hiredis(monkeypatch)
        app = make_redis_breaker(max_failures=3)
        redis_backend(app).store.client().ping()  # (a pooled connection: no handshake below)
        with commands_sent_here(monkeypatch) as sent:
            for _ in range(3):
                app.record_failure("pg", "timeout")
        assert [s[:18] for s in sent] == [b"*37\r\n$7\r\nEVALSHA\r\n"] * 3
        assert app.state("pg").state is CircuitState.OPEN

    def test_a_packed_failure_is_one_write_of_the_script_run(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        app = make_redis_breaker(max_failures=3)
        redis_backend(app).store.client().ping()  # (a pooled connection: no handshake below)
        with commands_sent_here(monkeypatch) as sent:
            app.record_failure("pg", "timeout")
        assert len(sent) == 1
        assert sent[0].startswith(b"*37\r\n$7\r\nEVALSHA\r\n$40\r\n" + SHA_BYTES[:10])

    def test_an_async_run_is_written_straight_to_its_connection(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On redis-py's asyncio client a packed run goes out in one write to the pooled
        connection's stream, not through redis-py's send: no task made to send it (redis-py's
        ``asyncio.wait_for`` makes one per command on CPython 3.10 and 3.11), and the reply
        read as redis-py reads it."""
        app = make_redis_breaker(max_failures=3)
        redis_backend(app).refresher.stop(5)  # (only this test's own runs on the loop)

        async def scenario() -> tuple[list[str], list[bytes], CircuitState, int]:
            loop = asyncio.get_running_loop()
            made: list[str] = []

            def counting(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
                made.append(getattr(coro, "__qualname__", repr(coro)))
                return asyncio.Task(coro, loop=loop, **options)

            try:
                await app.arecord_failure("pg", "timeout")  # (the pool's connection is opened)
                with _async_sends_spied(monkeypatch) as sent:
                    loop.set_task_factory(counting)  # type: ignore[arg-type]
                    await app.arecord_failure("pg", "timeout")
                    loop.set_task_factory(None)
                state = await app.astate("pg")
                return made, sent, state.state, state.failures
            finally:
                loop.set_task_factory(None)
                await app.aclose()

        made, sent, state, failures = asyncio.run(scenario())
        assert (made, sent) == ([], [])
        assert (state, failures) == (CircuitState.CLOSED, 2)

    @pytest.mark.parametrize("stream", ["closing", "still sending"])
    def test_an_async_run_is_not_written_to_a_busy_or_closing_stream(
        self, stream: str, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pooled asyncio connection whose stream is closing (as after the server's reset), or
        still has bytes to send, is never written to directly: the run goes through redis-py's
        own send (which, for a closed one, opens the connection again) and counts once."""
        app = make_redis_breaker(max_failures=3)
        redis_backend(app).refresher.stop(5)
        direct: list[bytes] = []
        get_connection: Any = None

        async def handed_out(self: Any, *args: Any, **options: Any) -> Any:
            connection = await get_connection(self, *args, **options)
            transport = connection._writer.transport
            if stream == "closing":
                transport.abort()
            else:
                monkeypatch.setattr(transport, "get_write_buffer_size", lambda: 1)
            monkeypatch.setattr(connection._writer, "write", direct.append)  # (redis-py's send: writelines)
            return connection

        async def scenario() -> tuple[list[bytes], int]:
            nonlocal get_connection
            try:
                await app.arecord_failure("pg", "timeout")
                pool_type = type(redis_backend(app).store.aclient().connection_pool)
                get_connection = pool_type.get_connection
                with monkeypatch.context() as patch, _async_sends_spied(monkeypatch) as sent:
                    patch.setattr(pool_type, "get_connection", handed_out)
                    await app.arecord_failure("pg", "timeout")
                return sent, (await app.astate("pg")).failures
            finally:
                await app.aclose()

        sent, failures = asyncio.run(scenario())
        assert direct == []  # never written to straight
        runs = [s for s in sent if b"EVALSHA" in s]  # (not a new connection's handshake)
        # a closing one: refused before anything went out, then sent on a new connection
        assert runs == [EVALSHA_HEAD] * (2 if stream == "closing" else 1)
        assert failures == 2  # counted, once

    def test_an_async_client_with_health_checks_sends_through_redis_py(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A client of the user's that checks its connections' health (``health_check_interval``)
        keeps its checks: its runs go through redis-py's own send."""

        async def scenario() -> tuple[Any, list[bytes]]:
            client = redis.asyncio.Redis.from_url(redis_url, health_check_interval=30)
            try:
                await client.ping()
                assert _packing.packs_own(client)
                with _async_sends_spied(monkeypatch) as sent:
                    reply = await _packing.acall_packed(client, hiredis.pack_command((b"ECHO", b"run")))
                return reply, sent
            finally:
                await client.aclose()

        reply, sent = asyncio.run(scenario())
        assert reply == b"run"
        assert sent == [b"*2\r\n$4\r\nECHO\r\n$3\r\n"]

    def test_a_policy_of_int_subclasses_is_sent_as_its_numbers(
        self, make_redis_breaker: MakeRedisBreaker
    ) -> None:
        """An ``IntEnum`` (any int subclass) in a policy goes out as its number (its repr, or
        hiredis, would not take it)."""

        class Size(enum.IntEnum):
            TWO = 2
            ONE = 1

        app = make_redis_breaker(
            max_failures=Size.TWO, min_failing_processes=Size.ONE, success_threshold=Size.ONE
        )
        app.record_failure("pg", "timeout")
        assert app.state("pg").state is CircuitState.CLOSED
        app.record_failure("pg", "timeout")
        assert app.state("pg").state is CircuitState.OPEN

    def test_an_error_reply_leaves_the_connection_in_step(self, redis_url: str) -> None:
        """An error reply is read whole: the connection is kept (the same one serves the next
        command) and the next reply is that command's own."""
        client = redis.Redis.from_url(redis_url)
        try:
            client.set("a-string", "text")
            connection_id = client.client_id()
            for _ in range(3):
                with pytest.raises(ResponseError, match="WRONGTYPE"):
                    _packing.call_packed(client, hiredis.pack_command((b"HLEN", b"a-string")))
                assert client.get("a-string") == b"text"
                assert client.client_id() == connection_id
        finally:
            client.close()

    def test_a_connection_the_server_closed_is_opened_again(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A pooled connection the server closed meanwhile costs no failure and no outage: the
        pool finds it closed when it hands it out and opens a new one, as for any command (and
        one a background thread was opening, killed mid-handshake, is opened again)."""
        app = make_redis_breaker(max_failures=2)
        app.record_failure("pg", "timeout")
        _kill_clients(redis_server)
        with capture_events(app) as events:
            app.record_failure("pg", "timeout")
        assert app.state("pg").state is CircuitState.OPEN
        assert EventKind.STORAGE_DEGRADED not in [e.kind for e in events]


class TestFullReads:
    def _circuits(self, app: CircuitBreaker, count: int) -> list[Any]:
        for n in range(count):
            app.protect(f"svc-{n}")(lambda: None)
        return list(redis_backend(app).store.circuits.values())

    def _reads_of_counted(self, redis_url: str, count: int) -> list[Any]:
        """Reads of ``count`` circuits, circuit ``n`` with ``n % 3`` failures (each reply says
        whose it is), made by a breaker closed again: no thread of its own sends meanwhile."""
        app = CircuitBreaker("redis", redis_url=redis_url, namespace="test:circuit")
        try:
            circuits = self._circuits(app, count)
            for n, circuit in enumerate(circuits):
                for _ in range(n % 3):
                    app.record_failure(circuit.service, "down")
            return [(c.keys, c.script_args("read")) for c in circuits]
        finally:
            app.close()

    def test_many_circuits_are_read_in_batches_each_reply_its_own(
        self, make_redis_breaker: MakeRedisBreaker, redis_url: str
    ) -> None:
        app = make_redis_breaker(use_clock=False, max_failures=1)
        circuits = self._circuits(app, 2 * READ_BATCH + 7)
        one = ServicePolicy(max_failures=1)
        other = CircuitBreaker("redis", redis_url=redis_url, namespace="test:circuit", default_policy=one)
        try:
            other.record_failure("svc-600", "down")  # in the second batch
            other.record_failure("svc-1006", "down")  # in the third
        finally:
            other.close()
        parsed = redis_backend(app).refresher.read_all(redis_backend(app).store.client())
        assert [circuit for circuit, _ in parsed] == circuits
        opened = {circuit.service for circuit, reply in parsed if reply.state is CircuitState.OPEN}
        assert opened == {"svc-600", "svc-1006"}

    def test_a_read_after_the_script_was_flushed_sends_it_again(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        app = make_redis_breaker(use_clock=False)
        circuits = self._circuits(app, READ_BATCH + 3)
        redis_server.client().script_flush()
        parsed = redis_backend(app).refresher.read_all(redis_backend(app).store.client())
        assert [circuit for circuit, _ in parsed] == circuits

    def test_a_read_after_the_server_closed_the_connection(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        app = make_redis_breaker(use_clock=False)
        circuits = self._circuits(app, READ_BATCH + 3)
        client = redis_backend(app).store.client()
        client.ping()  # (a pooled connection, which the server then closes)
        _kill_clients(redis_server)
        parsed = redis_backend(app).refresher.read_all(client)
        assert [circuit for circuit, _ in parsed] == circuits

    @pytest.mark.parametrize("runs", ["one run", "a full read"])
    def test_a_connection_lost_on_the_first_reply(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch, runs: str
    ) -> None:
        """A connection lost while the first reply is read (after the pool handed it out
        healthy): a full read (reads only) follows the client's retry policy, as any of its
        commands; a single run, which may write, is never sent again once it went out, whatever
        that policy (Redis may have run it)."""
        calls = self._reads_of_counted(redis_url, 6)
        read_response = redis.connection.AbstractConnection.read_response
        lost = {"left": 1}
        here = threading.current_thread()

        def loses_one(self: Any, *args: Any, **kwargs: Any) -> Any:
            if lost["left"] and threading.current_thread() is here:
                lost["left"] -= 1
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            return read_response(self, *args, **kwargs)

        def run(client: redis.Redis) -> list[Any]:
            if runs == "one run":
                keys, args = calls[4]
                return [eval_script(client, keys, args)]
            return [reply for replies in eval_batches(client, [calls[:3], calls[3:]]) for reply in replies]

        retrying = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 1))
        never = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
        try:
            for client in (retrying, never):
                client.ping()  # (a pooled connection, handed out healthy)
            monkeypatch.setattr(redis.connection.AbstractConnection, "read_response", loses_one)
            if runs == "one run":
                with pytest.raises(redis.exceptions.ConnectionError):
                    run(retrying)
            else:
                replies = run(retrying)
                assert [reply[2] for reply in replies] == [n % 3 for n in range(6)]
            lost["left"] = 1
            with pytest.raises(redis.exceptions.ConnectionError):
                run(never)
        finally:
            retrying.close()
            never.close()

    def test_a_read_given_up_midway_drops_its_connection(self, redis_url: str) -> None:
        """The next batch is already sent when a batch's replies are handed out: a read left
        there drops that connection rather than hand its unread replies to the next command."""
        app = CircuitBreaker("redis", redis_url=redis_url, namespace="test:circuit")
        client = redis.Redis.from_url(redis_url)  # (its own pool: only this read uses it)
        try:
            calls = [(c.keys, c.script_args("read")) for c in self._circuits(app, 30)]
            batches = eval_batches(client, [calls[:10], calls[10:20], calls[20:]])
            first = next(batches)
            [connection] = client.connection_pool._in_use_connections
            assert [type(reply) for reply in first] == [list] * 10
            batches.close()
            assert connection._sock is None  # dropped, not handed on
            client.set("plain", "value")
            for _ in range(5):
                assert client.get("plain") == b"value"
        finally:
            client.close()
            app.close()

    @pytest.mark.parametrize("lost_in", ["_read_replies", "send"])
    def test_a_connection_lost_midway_leaves_no_batch_unread(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch, lost_in: str
    ) -> None:
        """The connection is lost after the first batch (a failover, a restart): the batches in
        flight are sent again, one by one as redis-py would, and every batch gets its replies."""
        calls = self._reads_of_counted(redis_url, 12)
        client = redis.Redis.from_url(redis_url)
        try:
            target: Any = _pipelines if lost_in == "_read_replies" else _pipelines._InFlight
            real = getattr(target, lost_in)
            made = {"calls": 0}
            lost_at = 3 if lost_in == "send" else 2  # after the first batch's replies were read

            def loses_the_connection(*args: Any) -> Any:
                made["calls"] += 1
                if made["calls"] == lost_at:
                    raise redis.exceptions.ConnectionError("Connection closed by server.")
                return real(*args)

            monkeypatch.setattr(target, lost_in, loses_the_connection)
            replies = [
                r
                for batch in eval_batches(client, [calls[:3], calls[3:6], calls[6:9], calls[9:]])
                for r in batch
            ]
            monkeypatch.undo()
            assert [reply[2] for reply in replies] == [n % 3 for n in range(12)]
            assert made["calls"] >= 3
        finally:
            client.close()

    def test_a_health_check_is_asked_only_with_nothing_in_flight(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A client whose connections check their health (``health_check_interval``) sends a
        PING before a command once the interval has passed: never with a batch in flight,
        whose first reply it would read for its PONG. Every batch gets its own replies."""
        calls = self._reads_of_counted(redis_url, 9)
        client = redis.Redis.from_url(redis_url, health_check_interval=30)
        asked: list[bool] = []
        send = redis.connection.AbstractConnection.send_packed_command

        def watched(self: Any, command: Any, check_health: bool = True) -> None:
            asked.append(check_health)
            send(self, command, check_health)

        try:
            client.ping()
            monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", watched)
            failures = [
                reply[2]
                for replies in eval_batches(client, [calls[:3], calls[3:6], calls[6:]])
                for reply in replies
            ]
            monkeypatch.undo()
            assert failures == [n % 3 for n in range(9)]
            assert asked == [True, False, False]  # the first, with nothing in flight: checked if due
        finally:
            client.close()

    def test_runs_to_send_again_need_no_second_connection(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """A pool of one connection: runs the pipeline could not serve (the script was flushed)
        are sent again once the batches in flight are read and the connection given back."""
        app = CircuitBreaker("redis", redis_url=redis_url, namespace="test:circuit")
        pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=1)
        client = redis.Redis(connection_pool=pool)
        try:
            calls = [(c.keys, c.script_args("read")) for c in self._circuits(app, 12)]
            redis_server.client().script_flush()
            replies = [r for batch in eval_batches(client, [calls[:4], calls[4:8], calls[8:]]) for r in batch]
            assert [type(reply) for reply in replies] == [list] * 12
        finally:
            client.close()
            app.close()


class TestRepliesParsed:
    """Garbage in a reply or a notice is ``BadReply`` (reported as bad data), never another error."""

    @pytest.mark.parametrize(
        "notice",
        [
            '["pg", "closed", 1' + "0" * 400 + ", 0, 1]",  # a number too large for a float
            '["pg", "closed", true, 0, 1]',
            '["pg", "closed", NaN, 0, 1]',
            '["pg", "shut", 1, 0, 1]',
        ],
    )
    def test_a_bad_notice(self, notice: str) -> None:
        with pytest.raises(BadReply):
            parse_message(notice)

    def test_a_good_notice(self) -> None:
        notice = parse_message('["pg", "open", 1700000000000, 5, 1699999990000, 0, "", 7]')
        assert (notice.state, notice.failures, notice.version) == (CircuitState.OPEN, 5, 7)

    def test_a_reason_that_is_not_utf8_is_shown_replaced(self) -> None:
        raw = [b"closed", 0, 1, 1000, 0, 0, b"bad \xff byte", b"999", 0, b"", [b"closed"], 5, 60000, 0, 3]
        reply = Reply.parse(raw)
        assert reply.last == ("bad \ufffd byte", 999.0)
        with pytest.raises(BadReply):
            Reply.parse([b"\xff", *raw[1:]])
