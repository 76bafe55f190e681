"""The Redis backend against a real redis-server: same behaviour as local, shared, exact."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
import redis
import redis.asyncio

from tnm.circuit import (
    CircuitBackendError,
    CircuitBreaker,
    CircuitError,
    CircuitOpenError,
    CircuitState,
    EventKind,
    InvalidConfigError,
    ReturnValuePolicy,
    ReturnValuePolicyError,
    ServicePolicy,
)
from tnm.circuit.testing import ManualClock, capture_events

from ..redis_server import RedisServer
from .helpers import (
    mirror_reaches,
    redis_backend,
    script_calls,
    subscribers,
    wait_for,
    wait_until_listening,
)

MakeRedisBreaker = Callable[..., CircuitBreaker]


_stats_clients: dict[int, redis.Redis] = {}


def commands_processed(server: RedisServer) -> int:
    """Commands clients sent (round trips; a script counts once), less this measurement's own INFO."""
    client = _stats_clients.get(server.port)
    if client is None:
        client = _stats_clients[server.port] = server.client()
        client.ping()
    total = int(client.info("stats")["total_commands_processed"])
    _info_calls[server.port] = _info_calls.get(server.port, 0) + 1
    return total - _info_calls[server.port]


_info_calls: dict[int, int] = {}


class TestConfiguration:
    def test_seed_constructor(self, redis_url: str) -> None:
        """The seed's CircuitBreaker(backend="redis", redis_url, namespace, meta_ttl_seconds) works."""
        breaker = CircuitBreaker(
            backend="redis",
            default_policy=ServicePolicy(window_seconds=300, max_failures=10),
            redis_url=redis_url,
            namespace="myapp:circuit",
            meta_ttl_seconds=300,
        )
        breaker.initialize()
        try:
            assert breaker.execute("svc", lambda: 3) == 3
            assert breaker.backend.name == "redis"
        finally:
            breaker.close()

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:6379",
            "redis://:s3cret@127.0.0.1:notaport/0",
            "redis://:s3cret@/0",
            "redis://h/db",
        ],
    )
    def test_malformed_url(self, url: str) -> None:
        """A malformed URL fails at construction, naming redis_url, never showing the password."""
        with pytest.raises(InvalidConfigError) as info:
            CircuitBreaker("redis", redis_url=url)
        assert info.value.field == "redis_url"
        assert "s3cret" not in str(info.value)

    def test_unreachable_at_startup(self) -> None:
        """initialize() raises a CircuitError when Redis is down; no password in message or repr."""
        from ..redis_server import free_port

        url = f"redis://admin:s3cret@127.0.0.1:{free_port()}/0"
        breaker = CircuitBreaker("redis", redis_url=url, socket_timeout=0.2)
        with pytest.raises(CircuitError) as info:
            breaker.initialize()
        assert "s3cret" not in str(info.value)
        assert "admin:***@" in str(info.value)
        assert "s3cret" not in repr(breaker)
        assert "s3cret" not in repr(breaker.backend)

    def test_password_and_acl_user(self) -> None:
        """A password-protected server works through the URL; the password is never shown."""
        server = RedisServer(password="hunter2")
        server.start()
        try:
            breaker = CircuitBreaker("redis", redis_url=server.url)
            breaker.initialize()
            breaker.record_failure("svc", "x")
            assert breaker.state("svc").failures == 1
            assert "hunter2" not in repr(breaker.backend)
            breaker.close()
        finally:
            server.cleanup()

    def test_acl_user_and_ready_clients(self, redis_url: str, redis_server: RedisServer) -> None:
        """An ACL user in the URL works; so do ready clients passed instead of a URL."""
        admin = redis_server.client()
        admin.execute_command("ACL", "SETUSER", "app", "on", ">s3cret", "~*", "&*", "+@all")
        try:
            url = f"redis://app:s3cret@127.0.0.1:{redis_server.port}/0"
            with CircuitBreaker("redis", redis_url=url, namespace="acl") as breaker:
                breaker.record_failure("svc", "x")
                assert breaker.state("svc").failures == 1
                assert "s3cret" not in repr(breaker.backend)
            sync_client = redis.Redis.from_url(url)
            async_client = redis.asyncio.Redis.from_url(url)
            breaker = CircuitBreaker("redis", client=sync_client, async_client=async_client, namespace="acl")
            breaker.initialize()
            assert breaker.state("svc").failures == 1

            async def main() -> None:
                try:
                    await breaker.execute_async("svc", _araiser, TimeoutError())
                finally:
                    await async_client.aclose()  # the application owns the clients it passes

            with pytest.raises(TimeoutError):
                asyncio.run(main())
            assert breaker.state("svc").failures == 2
            breaker.close()
            sync_client.close()
        finally:
            admin.execute_command("ACL", "DELUSER", "app")


class TestSharedState:
    def test_state_machine_matches_local(
        self, make_redis_breaker: MakeRedisBreaker, clock: ManualClock
    ) -> None:
        """Open at the threshold, reject, half-open after the open time, close on a trial success."""
        breaker = make_redis_breaker(window_seconds=60, max_failures=3, open_seconds=10)
        for _ in range(3):
            with pytest.raises(ConnectionError):
                breaker.execute("es", _raiser, ConnectionError("down"))
        with pytest.raises(CircuitOpenError) as info:
            breaker.execute("es", lambda: None)
        assert info.value.retry_after == pytest.approx(10)
        assert info.value.last_failure == {"reason": "ConnectionError: down", "ts": clock.time()}
        clock.advance(10)
        assert breaker.is_available("es")
        assert breaker.execute("es", lambda: "trial") == "trial"
        assert breaker.state("es").state is CircuitState.CLOSED

    @pytest.mark.perf
    def test_other_process_sees_opening_fast(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """A change made by one breaker reaches another's mirror by notice, long before a refresh could."""
        # Refreshes are 10 s apart, so a mirror that opens within the bound below was told
        # by the notice. The bound is what a busy machine meets; docs/benchmarks.md gives
        # the latency on an idle one.
        options = {"refresh_interval": 10.0}
        first = make_redis_breaker(max_failures=2, use_clock=False, backend_options=options)
        second = make_redis_breaker(max_failures=2, use_clock=False, backend_options=options)
        delays = []
        for trial in range(20):
            service = f"svc-{trial}"
            second.is_available(service)  # second mirrors the service
            first.record_failure(service, "x")
            started = time.monotonic()
            first.record_failure(service, "x")  # opens
            assert mirror_reaches(second, service, CircuitState.OPEN, 2.0)
            delays.append(time.monotonic() - started)
        delays.sort()
        assert delays[18] < 1.0, delays
        with pytest.raises(CircuitOpenError):
            second.execute("svc-0", lambda: None)

    def test_success_resets_for_everyone(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """A success in one process resets the count the other process sees."""
        first = make_redis_breaker(max_failures=3)
        second = make_redis_breaker(max_failures=3)
        first.record_failure("svc", "x")
        first.record_failure("svc", "x")
        second.is_available("svc")
        assert wait_for(lambda: second.circuits()["svc"].dirty)
        second.execute("svc", lambda: None)
        assert first.state("svc").failures == 0

    def test_force_open_is_fleet_wide(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """An operator's force_open holds for every process until reset."""
        ops = make_redis_breaker()
        app = make_redis_breaker()
        app.is_available("pg")
        ops.force_open("pg", reason="failover")
        assert mirror_reaches(app, "pg", CircuitState.FORCED_OPEN)
        with pytest.raises(CircuitOpenError) as info:
            app.execute("pg", lambda: None)
        assert info.value.retry_after is None
        assert app.last_failure("pg")["reason"] == "failover"  # type: ignore[index]
        ops.reset("pg")
        assert mirror_reaches(app, "pg", CircuitState.CLOSED)
        assert app.execute("pg", lambda: 1) == 1

    def test_states_lists_every_process_services(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """states() includes services registered by other processes."""
        first = make_redis_breaker()
        first.record_failure("only-in-first", "x")
        second = make_redis_breaker()
        assert wait_for(lambda: "only-in-first" in [s.service for s in second.states()])

    @pytest.mark.perf
    def test_lost_notifications_bounded_by_refresh_interval(
        self, make_redis_breaker: MakeRedisBreaker
    ) -> None:
        """A change whose notification never arrives still reaches the mirror within refresh_interval."""
        watcher = make_redis_breaker(
            max_failures=1, use_clock=False, backend_options={"refresh_interval": 0.2}
        )
        watcher.is_available("svc")
        # Another process whose notifications go to a channel nobody listens to.
        silent = make_redis_breaker(max_failures=1, use_clock=False)
        redis_backend(silent).keys.channel = "nobody-listens"  # before its circuit exists
        silent.record_failure("svc", "x")
        started = time.monotonic()
        assert mirror_reaches(watcher, "svc", CircuitState.OPEN, 5.0)
        # One refresh_interval plus one refresh round, with room for a busy machine.
        assert time.monotonic() - started < 0.2 + 1.0


class TestCost:
    def test_healthy_path_makes_no_round_trip(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """1000 successful calls on a closed circuit with no failures send no Redis command."""
        breaker = make_redis_breaker(
            use_clock=False, initialize=False, backend_options={"refresh_interval": 60}
        )
        assert wait_for(lambda: subscribers(redis_server, breaker) == 0)  # earlier tests' listeners are gone
        breaker.initialize()
        op = breaker.protect("svc")(lambda: 1)
        op()
        assert wait_until_listening(redis_server, breaker)
        before = commands_processed(redis_server)
        for _ in range(1000):
            op()
        assert commands_processed(redis_server) - before == 0

    def test_rejection_makes_no_round_trip(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """While open, rejected calls are decided locally."""
        # Opened by another process, gone before this one starts: no notice of its own in flight
        opener = make_redis_breaker(max_failures=1, use_clock=False)
        opener.record_failure("svc", "x")
        opener.close()
        breaker = make_redis_breaker(
            max_failures=1, use_clock=False, initialize=False, backend_options={"refresh_interval": 60}
        )
        assert wait_for(lambda: subscribers(redis_server, breaker) == 0)  # earlier tests' listeners are gone
        breaker.initialize()
        with pytest.raises(CircuitOpenError):
            breaker.execute("svc", lambda: None)  # the first call reads the shared state
        assert wait_until_listening(redis_server, breaker)
        before = commands_processed(redis_server)
        for _ in range(500):
            with pytest.raises(CircuitOpenError):
                breaker.execute("svc", lambda: None)
        assert commands_processed(redis_server) - before == 0

    def test_failure_is_one_round_trip(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """Each failure costs one round trip: one script call."""
        # The first failure publishes (failures now exist): made by another process, gone before
        # this one starts, so that no notice (and no re-read on it) is in flight while counting
        warm = make_redis_breaker(max_failures=1000, use_clock=False)
        warm.record_failure("svc", "warm")
        warm.close()
        breaker = make_redis_breaker(
            max_failures=1000, use_clock=False, initialize=False, backend_options={"refresh_interval": 60}
        )
        assert wait_for(lambda: subscribers(redis_server, breaker) == 0)  # earlier tests' listeners are gone
        breaker.initialize()
        breaker.record_failure("svc", "x")  # this process's first use of the circuit
        assert wait_until_listening(redis_server, breaker)
        before = script_calls(redis_server)
        for _ in range(100):
            breaker.record_failure("svc", "x")
        assert script_calls(redis_server) - before == 100


class TestLifecycle:
    def test_a_closed_backend_stays_closed_when_its_own_thread_finishes_a_task(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """Work the refresher finishes after close() (a permit returned, an outcome settled)
        never starts the threads again: nothing stays subscribed for the rest of the process.
        A caller's use of a closed breaker still starts them (documented)."""
        breaker = make_redis_breaker(max_failures=5, use_clock=False)
        breaker.record_failure("svc", "x")
        assert wait_until_listening(redis_server, breaker)
        breaker.close()
        assert wait_for(lambda: subscribers(redis_server, breaker) == 0)
        late = threading.Thread(
            target=lambda: breaker.record_failure("svc", "late"),
            name=redis_backend(breaker).refresher.thread_name,
        )
        late.start()
        late.join(10)
        backend = redis_backend(breaker)
        assert (backend.listener._thread, backend.refresher._thread) == (None, None)  # not started
        assert subscribers(redis_server, breaker) == 0
        breaker.record_failure("svc", "a caller")  # a caller's use starts them again
        assert wait_for(lambda: subscribers(redis_server, breaker) == 1)

    def test_close_runs_the_refreshers_last_tasks_without_starting_it_again(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A task left for the refresher (a permit to give back) runs in close() itself: the
        round trip it makes does not start the threads that close() is stopping."""
        breaker = make_redis_breaker(max_failures=5, use_clock=False)
        breaker.record_failure("svc", "x")
        backend = redis_backend(breaker)
        ran: list[str] = []
        backend.refresher.stop(5)  # (as close() does first: the task is left for close())
        backend.refresher.submit(lambda: ran.append("task") or breaker.record_failure("svc", "late"))
        breaker.close()
        assert ran == ["task"]
        assert (backend.listener._thread, backend.refresher._thread) == (None, None)
        assert wait_for(lambda: subscribers(redis_server, breaker) == 0)


class TestData:
    def test_keys_are_namespaced_tagged_and_bounded(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """Keys live under the namespace, one hash tag per service; failure and reporter sets are bounded."""
        breaker = make_redis_breaker(window_seconds=3600, max_failures=1000)
        for _ in range(5):
            breaker.record_failure("My {odd} Service", "x")
        client = redis_server.client()
        keys = sorted(k.decode() for k in client.keys("*"))
        assert all(k.startswith("test:circuit:") for k in keys)
        tagged = [k for k in keys if "%7Bodd%7D" in k]
        # no permits in use; the reporters: who failed in the window (for the quorum)
        assert [k.rsplit(":", 1)[1] for k in tagged] == ["failures", "reporters", "state"]
        assert {k.split("{")[1].split("}")[0] for k in tagged} == {"My %7Bodd%7D Service"}
        assert client.hget(tagged[-1], "svc") == b"My {odd} Service"
        assert all(client.pttl(k) > 0 for k in tagged)
        small = make_redis_breaker(window_seconds=3600, max_failures=3)
        for _ in range(50):
            small.record_failure("bounded", "x")
            small.reset("bounded")
            small.record_failure("bounded", "x")
        assert client.zcard("test:circuit:{bounded}:failures") <= 3
        assert client.zcard("test:circuit:{bounded}:reporters") <= 2  # this backend: seen, failing

    def test_names_are_exact(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """my-service and My-Service are two circuits in Redis too."""
        breaker = make_redis_breaker(max_failures=1)
        breaker.record_failure("my-service", "x")
        assert not breaker.is_available("my-service")
        assert breaker.is_available("My-Service")
        assert breaker.is_available("my_service")


class TestAsync:
    def test_async_path_uses_async_client(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """protect on a coroutine function records through redis.asyncio and opens the circuit."""
        breaker = make_redis_breaker(max_failures=2)

        @breaker.protect("svc")
        async def call(fail: bool) -> str:
            if fail:
                raise TimeoutError("slow")
            return "ok"

        async def main() -> None:
            assert await call(False) == "ok"
            for _ in range(2):
                with pytest.raises(TimeoutError):
                    await call(True)
            with pytest.raises(CircuitOpenError):
                await call(False)
            await breaker.aclose()

        asyncio.run(main())

    def test_async_paths_never_use_the_sync_client(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Failures, return-value failures, trials and successes on the async path all go
        through redis.asyncio: the sync client (which would block the loop) is never used."""
        from tnm.circuit.backends.redis import _operations

        sync_calls: list[object] = []
        original = _operations.eval_script
        monkeypatch.setattr(_operations, "eval_script", lambda *a: sync_calls.append(a) or original(*a))
        breaker = make_redis_breaker(max_failures=2, open_seconds=1)
        clock = breaker.clock
        assert isinstance(clock, ManualClock)

        @breaker.protect("svc", on_retval_policy=ReturnValuePolicy(retval_none=True))
        async def call(value: object) -> object:
            if value == "raise":
                raise TimeoutError
            return value

        async def main() -> None:
            with pytest.raises(TimeoutError):
                await call("raise")
            with pytest.raises(ReturnValuePolicyError):
                await call(None)
            with pytest.raises(CircuitOpenError):
                await call(1)
            clock.advance(1)
            assert await call(1) == 1  # trial (permit, then success)
            assert await breaker.ais_available("svc")
            await breaker.aclose()

        asyncio.run(main())
        assert sync_calls == []


class TestOutage:
    @pytest.mark.slow
    def test_redis_killed_and_restarted_mid_traffic(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """No call fails because Redis died; listeners hear degraded/recovered; sharing resumes."""
        breaker = make_redis_breaker(
            max_failures=3, use_clock=False, backend_options={"socket_timeout": 0.2, "warn_interval": 60}
        )
        errors: list[BaseException] = []
        stop = threading.Event()

        def traffic() -> None:
            op = breaker.protect("svc")(lambda: 1)
            while not stop.is_set():
                try:
                    assert op() == 1
                except BaseException as exc:  # any error here is a failed user call
                    errors.append(exc)

        with capture_events(breaker) as events:
            thread = threading.Thread(target=traffic)
            thread.start()
            time.sleep(0.1)
            redis_server.stop()
            breaker.record_failure("svc", "during outage")  # decided locally
            assert breaker.state("svc").failures == 1
            time.sleep(0.3)
            redis_server.start()
            assert wait_for(lambda: breaker.storage_available, 10)
            stop.set()
            thread.join(timeout=10)
        assert errors == []
        kinds = [e.kind for e in events if e.service == "*"]
        # A restart without persistence lost the data: reported between the two.
        assert kinds == [EventKind.STORAGE_DEGRADED, EventKind.STORAGE_RESET, EventKind.STORAGE_RECOVERED]
        other = make_redis_breaker(max_failures=3, use_clock=False)
        breaker.record_failure("svc", "shared again")
        assert other.state("svc").failures == 1

    def test_slow_redis_is_bounded_by_socket_timeout(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """With Redis paused longer than socket_timeout, a failure returns after about the
        timeout, never raises, and is decided locally."""
        breaker = make_redis_breaker(max_failures=5, use_clock=False, backend_options={"socket_timeout": 0.2})
        breaker.record_failure("svc", "warm")
        redis_server.client().execute_command("CLIENT", "PAUSE", 1500)
        started = time.monotonic()
        breaker.record_failure("svc", "while slow")
        assert time.monotonic() - started < 1.0
        assert not breaker.storage_available
        assert breaker.execute("svc", lambda: "still served") == "still served"

    def test_raise_option(self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer) -> None:
        """on_storage_error='raise' turns calls into CircuitBackendError while Redis is down."""
        breaker = make_redis_breaker(
            max_failures=3, backend_options={"socket_timeout": 0.2, "on_storage_error": "raise"}
        )
        breaker.record_failure("svc", "x")
        redis_server.stop()
        breaker.record_failure("svc", "y")  # notices the outage
        with pytest.raises(CircuitBackendError, match="unavailable"):
            breaker.execute("svc", lambda: None)

    def test_fail_closed_option(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """on_storage_error='reject' refuses calls while Redis is down."""
        breaker = make_redis_breaker(
            max_failures=3, backend_options={"socket_timeout": 0.2, "on_storage_error": "reject"}
        )
        breaker.execute("svc", lambda: None)
        breaker.record_failure("svc", "x")
        redis_server.stop()
        breaker.record_failure("svc", "y")  # notices the outage
        with pytest.raises(CircuitOpenError):
            breaker.execute("svc", lambda: None)


def _raiser(exc: BaseException) -> None:
    raise exc


async def _araiser(exc: BaseException) -> None:
    raise exc
