"""The shared view holds through cold starts, stalls, lost subscriptions, corrupt keys,
cancellation and data loss (one breaker per simulated process, on a real redis-server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tnm.circuit import (
    CircuitBackendError,
    CircuitBreaker,
    CircuitEvent,
    CircuitOpenError,
    CircuitState,
    EventKind,
    InvalidConfigError,
    InvalidConfigTypeError,
    ServicePolicy,
)
from tnm.circuit.backends.redis._circuit import RedisCircuit
from tnm.circuit.testing import ManualClock, capture_events, mirror_state

from ..redis_server import RedisServer, free_port
from .helpers import (
    commands_sent_here,
    mirror_reaches,
    redis_backend,
    subscribers,
    wait_for,
    wait_until_listening,
)

MakeRedisBreaker = Callable[..., CircuitBreaker]


def mirror(breaker: CircuitBreaker, service: str) -> RedisCircuit:
    """This process's handle for ``service``: the mirror its call path reads."""
    circuit = breaker.circuits()[service]
    assert isinstance(circuit, RedisCircuit)
    return circuit


def _fail() -> None:
    raise ConnectionError("down")


class TestColdStart:
    def test_first_call_sees_a_forced_open_circuit(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """A process's first call to a service another process forced open is rejected: nothing runs."""
        make_redis_breaker().force_open("pg", "maintenance")
        fresh = make_redis_breaker()
        ran: list[int] = []
        with pytest.raises(CircuitOpenError) as info:
            fresh.execute("pg", lambda: ran.append(1))
        assert ran == []
        assert info.value.retry_after is None
        other = make_redis_breaker()
        assert not other.is_available("pg")
        assert make_redis_breaker().state("pg").state is CircuitState.FORCED_OPEN

    def test_first_async_call_sees_an_open_circuit(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """The async first call reads the shared state through the async client and is rejected."""
        first = make_redis_breaker(max_failures=1)
        first.record_failure("es", "down")
        fresh = make_redis_breaker(max_failures=1)
        ran: list[int] = []

        async def call() -> None:
            ran.append(1)

        async def main() -> None:
            with pytest.raises(CircuitOpenError):
                await fresh.execute_async("es", call)
            assert not await fresh.ais_available("es")
            await fresh.aclose()

        asyncio.run(main())
        assert ran == []

    def test_one_read_per_service(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A new process's calls pay one script run for the first call of a service, then none."""
        from tnm.circuit.backends.redis import _operations

        runs: list[object] = []
        original = _operations.eval_script
        monkeypatch.setattr(_operations, "eval_script", lambda *a: runs.append(a) or original(*a))
        fresh = make_redis_breaker()
        for _ in range(50):
            fresh.execute("svc", lambda: 1)
        assert len(runs) == 1

    def test_cold_success_resets_the_shared_count(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """A success in a new process resets the failure count recorded by another."""
        first = make_redis_breaker(max_failures=3)
        first.record_failure("svc", "x")
        first.record_failure("svc", "x")
        make_redis_breaker(max_failures=3).execute("svc", lambda: None)
        assert first.state("svc").failures == 0

    def test_cold_trials_respect_half_open_max_calls(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """Eleven new processes calling a half-open circuit at once run exactly one trial."""
        first = make_redis_breaker(max_failures=1, open_seconds=1, half_open_max_calls=1)
        first.record_failure("svc", "x")
        clock = first.clock
        assert isinstance(clock, ManualClock)
        clock.advance(1)
        fresh = [make_redis_breaker(max_failures=1, open_seconds=1, half_open_max_calls=1) for _ in range(11)]
        release = threading.Event()
        ran: list[int] = []
        rejected: list[int] = []

        def trial(breaker: CircuitBreaker) -> None:
            try:
                breaker.execute("svc", lambda: ran.append(1) or release.wait(5))
            except CircuitOpenError:
                rejected.append(1)

        threads = [threading.Thread(target=trial, args=(b,)) for b in fresh]
        for thread in threads:
            thread.start()
        assert wait_for(lambda: len(ran) + len(rejected) == 11 or len(rejected) == 10, 10)
        release.set()
        for thread in threads:
            thread.join(10)
        assert (len(ran), len(rejected)) == (1, 10)

    def test_handles_made_before_initialize_are_read_at_initialize(
        self, make_redis_breaker: MakeRedisBreaker
    ) -> None:
        """A protect() made at import time knows the shared state once initialize() returns."""
        make_redis_breaker().force_open("pg", "maintenance")
        app = make_redis_breaker(initialize=False)
        ran: list[int] = []
        load = app.protect("pg")(lambda: ran.append(1))
        app.initialize()
        assert mirror_state(app, "pg") is CircuitState.FORCED_OPEN
        with pytest.raises(CircuitOpenError):
            load()
        assert ran == []


class TestRecovery:
    @pytest.mark.slow
    def test_one_timeout_does_not_leave_the_process_alone(
        self,
        make_redis_breaker: MakeRedisBreaker,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """After one call-path timeout (DEBUG SLEEP), shared state resumes within 2x refresh_interval
        of Redis answering, with one storage_recovered event and one "back" line."""
        options = {"socket_timeout": 0.2, "refresh_interval": 0.5}
        app = make_redis_breaker(max_failures=2, use_clock=False, backend_options=options)
        app.execute("svc", lambda: 1)
        sleeper = threading.Thread(
            target=lambda: redis_server.client().execute_command("DEBUG", "SLEEP", "1.0")
        )
        probe = redis.Redis(
            host="127.0.0.1",
            port=redis_server.port,
            password=redis_server.password,
            socket_timeout=0.05,
            retry=Retry(NoBackoff(), 0),
        )
        probe.ping()

        def stalled() -> bool:
            try:
                probe.ping()
            except redis.TimeoutError:
                return True
            return False

        caplog.set_level(logging.WARNING, logger="tnm.circuit")
        with capture_events(app) as events:
            sleeper.start()
            assert wait_for(stalled, 2)  # the server sleeps now
            app.record_failure("svc", "during the stall")  # times out: degraded
            assert not app.storage_available
            sleeper.join(5)
            answered = time.monotonic()
            assert wait_for(lambda: app.storage_available, 5)
            took = time.monotonic() - answered
            assert took <= 2 * 0.5 + 0.3, took  # the promise, plus a little for a busy machine
        kinds = [e.kind for e in events if e.service == "*"]
        assert kinds == [EventKind.STORAGE_DEGRADED, EventKind.STORAGE_RECOVERED]
        assert len([r for r in caplog.records if "shared state resumes" in r.getMessage()]) == 1
        other = make_redis_breaker(max_failures=2, use_clock=False)  # a process that never saw the stall
        other.record_failure("svc", "x")
        other.record_failure("svc", "x")  # opens, fleet-wide again
        assert wait_for(lambda: not app.is_available("svc"), 2)

    def test_a_store_refusing_the_script_logs_once(
        self,
        make_redis_breaker: MakeRedisBreaker,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A grant revoked while running (every call refused) neither flaps nor floods the log:
        one line, calls still served."""
        admin = redis_server.client()
        admin.acl_setuser("noscript", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                          commands=["+@all"])  # fmt: skip
        url = f"redis://noscript:pw@127.0.0.1:{redis_server.port}/0"
        app = CircuitBreaker("redis", redis_url=url, namespace="noperm", refresh_interval=0.05)
        app.initialize()
        admin.acl_setuser("noscript", enabled=True, commands=["-evalsha", "-eval"])  # revoked
        caplog.set_level(logging.WARNING, logger="tnm.circuit")
        try:
            deadline = time.monotonic() + 1.0
            served = 0
            while time.monotonic() < deadline:
                app.record_failure("svc", "x")
                served += app.execute("svc", lambda: 1)
            # This store's lines only: breakers of other tests may still be logging about theirs.
            lines = [r for r in caplog.records if "circuit store at redis://noscript:" in r.getMessage()]
            assert served > 10
            assert len(lines) == 1, [r.getMessage() for r in lines]
            assert "NOPERM" in lines[0].getMessage() or "permission" in lines[0].getMessage()
            assert "pw@" not in lines[0].getMessage()
        finally:
            app.close()
            admin.acl_deluser("noscript")


class TestDegradedStartsFromSharedState:
    def test_forced_open_stays_forced_when_redis_dies(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """With Redis gone, a forced-open circuit keeps rejecting; an open one stays open to its deadline."""
        ops = make_redis_breaker()
        app = make_redis_breaker(max_failures=1, open_seconds=30, backend_options={"socket_timeout": 0.2})
        ops.force_open("pg", "failover")
        app.record_failure("es", "down")
        app.is_available("pg")
        redis_server.stop()
        app.record_failure("other", "notices the outage")
        assert not app.storage_available
        ran: list[int] = []
        for service in ("pg", "es"):
            with pytest.raises(CircuitOpenError):
                app.execute(service, lambda: ran.append(1))
        assert ran == []
        clock = app.clock
        assert isinstance(clock, ManualClock)
        clock.advance(30)
        assert app.execute("es", lambda: "trial") == "trial"  # its own deadline passed
        with pytest.raises(CircuitOpenError):
            app.execute("pg", lambda: ran.append(1))

    def test_lost_subscription_is_not_an_outage(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """CLIENT KILL TYPE pubsub: no degradation, no healthy call rejected (even failing closed),
        and trips reach the process again once it has subscribed again."""
        app = make_redis_breaker(
            max_failures=1,
            use_clock=False,
            backend_options={"on_storage_error": "reject", "refresh_interval": 5},
        )
        other = make_redis_breaker(max_failures=1, use_clock=False)
        app.execute("svc", lambda: 1)
        app.is_available("tripped")
        with capture_events(app) as events:
            redis_server.client().client_kill_filter(_type="pubsub")
            for _ in range(200):
                assert app.execute("svc", lambda: 1) == 1
            # (both subscribed again: app's flag alone may still stand from the killed connection)
            assert wait_for(lambda: subscribers(redis_server, app) == 2, 5)
            other.record_failure("tripped", "down")
            assert wait_for(lambda: not app.is_available("tripped"), 1)
        assert [e for e in events if e.service == "*"] == []

    def test_script_flush_is_answered_by_reloading(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """SCRIPT FLUSH: the next change reloads the script; nothing degrades."""
        app = make_redis_breaker(max_failures=2, backend_options={"refresh_interval": 0.05})
        with capture_events(app) as events:
            app.record_failure("svc", "x")
            redis_server.client().script_flush()
            app.record_failure("svc", "x")
            assert app.state("svc").state is CircuitState.OPEN
            redis_server.client().script_flush()
            time.sleep(0.2)  # a few refreshes run their pipeline on the flushed cache
        assert app.storage_available
        assert [e for e in events if e.service == "*"] == []


class TestCorruptData:
    def test_bogus_state_is_repaired_not_raised(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """HSET s bogus: callers never see it, the circuit is rewritten from its last good state."""
        app = make_redis_breaker(max_failures=1, open_seconds=30)
        other = make_redis_breaker(max_failures=1, open_seconds=30)
        app.execute("fine", lambda: 1)
        assert app.is_available("svc")
        other.record_failure("svc", "down")  # open, by another process: app reads it on the notice
        assert mirror_reaches(app, "svc", CircuitState.OPEN)  # (no read of app's own notice in flight)
        other.close()
        state_key = redis_backend(app).keys.for_service("svc")[0]
        # (events captured from the write on: the refresher's own read may repair it first,
        # and then report it from its thread a moment after our read found it repaired)
        with capture_events(app) as events:
            redis_server.client().hset(state_key, "s", "bogus")
            with pytest.raises(CircuitOpenError):
                app.execute("svc", lambda: 1)
            assert app.state("svc").state is CircuitState.OPEN
            assert wait_for(
                lambda: any(e.service == "svc" and e.kind is EventKind.STORAGE_REPAIRED for e in events), 2
            )
        assert redis_server.client().hget(state_key, "s") == b"open"
        assert app.execute("fine", lambda: 2) == 2
        assert app.storage_available

    def test_a_repair_made_by_the_notice_reader_is_reported(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A notice makes this process read the circuit; the repair that read made says so."""
        app = make_redis_breaker(max_failures=1, open_seconds=30, backend_options={"refresh_interval": 30})
        other = make_redis_breaker(max_failures=1, open_seconds=30)
        app.execute("svc", lambda: 1)
        # both subscribed, and app's refresher read once since: it reads nothing more now
        refresher = redis_backend(app).refresher
        assert wait_for(lambda: subscribers(redis_server, app) == 2 and refresher.read_done.is_set(), 5)
        other.record_failure("svc", "down")  # open: app's listener reads it on the notice
        assert mirror_reaches(app, "svc", CircuitState.OPEN)  # (so its last good state is open)
        other.close()  # app's listener is the only reader left
        assert wait_for(lambda: subscribers(redis_server, app) == 1, 5)
        backend = redis_backend(app)
        state_key = backend.keys.for_service("svc")[0]
        admin = redis_server.client()
        repaired_on: list[str] = []

        def listener(event: CircuitEvent) -> None:
            if event.kind is EventKind.STORAGE_REPAIRED and event.service == "svc":
                repaired_on.append(threading.current_thread().name)

        app.add_listener(listener)
        admin.hset(state_key, "s", "bogus")
        admin.publish(backend.keys.channel, json.dumps(["svc", "open", 0, 0, 0]))
        assert wait_for(lambda: repaired_on, 2)
        assert repaired_on == [backend.listener.thread_name]
        assert admin.hget(state_key, "s") == b"open"

    def test_a_key_of_the_wrong_type_affects_only_its_circuit(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A string where a hash belongs: that circuit is repaired, the others and the backend are fine."""
        app = make_redis_breaker(max_failures=2)
        app.record_failure("svc", "x")
        app.record_failure("fine", "x")
        keys = redis_backend(app).keys.for_service("svc")
        admin = redis_server.client()
        admin.set(keys[0], "garbage")
        admin.set(keys[1], "garbage")
        app.record_failure("svc", "x")
        assert app.state("svc").failures == 1
        assert app.state("fine").failures == 1
        assert app.storage_available

    def test_garbage_notices_are_ignored(
        self,
        make_redis_breaker: MakeRedisBreaker,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Garbage and far-future notices on the channel change no mirror and log at most a line."""
        app = make_redis_breaker(max_failures=1, use_clock=False)
        other = make_redis_breaker(max_failures=1, use_clock=False)
        app.execute("svc", lambda: 1)
        caplog.set_level(logging.WARNING, logger="tnm.circuit")
        admin = redis_server.client()
        channel = redis_backend(app).keys.channel
        far_future = (time.time() + 10**6) * 1000
        assert wait_for(lambda: subscribers(redis_server, app) == 2, 5)  # both hear them all

        def corrupt_lines() -> int:
            return len([r for r in caplog.records if "corrupt" in r.getMessage()])

        for message in [b"\xff\xfe", "not json", json.dumps(["svc", "bogus", 0, 0, 1]), json.dumps({"a": 1}),
                        json.dumps(["svc", "forced_open", -1, 0, far_future, 0, ""])] * 50:  # fmt: skip
            admin.publish(channel, message)
        assert wait_for(lambda: corrupt_lines() >= 2, 3)
        time.sleep(0.1)
        assert app.execute("svc", lambda: 1) == 1
        assert mirror_state(app, "svc") is CircuitState.CLOSED
        other.record_failure("svc", "down")  # a real change still gets through
        assert wait_for(lambda: mirror_state(app, "svc") is CircuitState.OPEN, 2)
        # 250 bad notices: one line for each of the two breakers (processes) that heard them.
        assert corrupt_lines() == 2


class TestPermits:
    def test_cancelled_trial_returns_its_permit(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """An async call cancelled while its permit request is in flight gives the permit back
        when the reply lands, so other processes' trials are not blocked for trial_timeout."""
        policy = {"max_failures": 1, "open_seconds": 1, "half_open_max_calls": 1, "trial_timeout_seconds": 20}
        app = make_redis_breaker(**policy)
        other = make_redis_breaker(**policy)
        app.record_failure("svc", "down")
        clock = app.clock
        assert isinstance(clock, ManualClock)
        clock.advance(1)

        async def call() -> int:
            return 1

        async def main() -> None:
            threading.Thread(
                target=lambda: redis_server.client().execute_command("CLIENT", "PAUSE", 300)
            ).start()
            await asyncio.sleep(0.05)
            task = asyncio.create_task(app.execute_async("svc", call))
            await asyncio.sleep(0.05)  # the permit request is waiting on the paused server
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await app.aclose()

        asyncio.run(main())
        assert wait_for(lambda: other.state("svc").trials_in_flight == 0, 3)
        assert other.execute("svc", lambda: "trial") == "trial"

    def test_half_open_rejections_make_no_round_trip(
        self, make_redis_breaker: MakeRedisBreaker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While every trial permit is taken, other processes reject from their mirror."""

        policy = {"max_failures": 1, "open_seconds": 1, "half_open_max_calls": 1}
        app = make_redis_breaker(**policy)
        other = make_redis_breaker(**policy)
        app.record_failure("svc", "down")
        other.is_available("svc")
        clock = app.clock
        assert isinstance(clock, ManualClock)
        clock.advance(1)
        token = mirror(app, "svc").acquire()
        assert token > 0
        assert wait_for(lambda: mirror(other, "svc").open_until > clock.monotonic(), 2)
        with commands_sent_here(monkeypatch) as sent:
            for _ in range(100):
                with pytest.raises(CircuitOpenError):
                    other.execute("svc", lambda: 1)
        assert sent == []
        mirror(app, "svc").on_success(token)
        assert wait_for(lambda: other.is_available("svc"), 2)


class TestDataLoss:
    def test_flushall_is_reported_and_forced_open_restored(
        self,
        make_redis_breaker: MakeRedisBreaker,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """FLUSHALL: storage_reset and a warning; circuits the fleet had forced open stay forced open,
        even one this process never used."""
        ops = make_redis_breaker()
        app = make_redis_breaker(use_clock=False, backend_options={"refresh_interval": 0.1})
        ops.force_open("pg", "failover")
        ops.force_open("never-used-here", "maintenance")
        app.is_available("pg")
        assert wait_for(lambda: "never-used-here" in redis_backend(app).overrides.known, 2)
        caplog.set_level(logging.WARNING, logger="tnm.circuit")
        with capture_events(app) as events:
            redis_server.client().flushall()
            assert wait_for(lambda: any(e.kind is EventKind.STORAGE_RESET for e in events), 3)
        assert any("lost its data" in r.getMessage() for r in caplog.records)
        fresh = make_redis_breaker()
        assert fresh.state("pg").state is CircuitState.FORCED_OPEN
        assert fresh.state("never-used-here").state is CircuitState.FORCED_OPEN
        assert fresh.last_failure("pg")["reason"] == "failover"  # type: ignore[index]
        with pytest.raises(CircuitOpenError):
            app.execute("pg", lambda: 1)
        ops.reset("never-used-here")
        assert "never-used-here" not in {
            k.decode() for k in redis_server.client().hkeys("test:circuit:forced")
        }


class TestErrorsAndSecrets:
    def test_errors_carry_what_redis_said(self) -> None:
        """initialize() says why it failed (connection refused), never the password."""
        url = f"redis://u:s3cret@127.0.0.1:{free_port()}/0?socket_connect_timeout=0.5"
        breaker = CircuitBreaker("redis", redis_url=url)
        with pytest.raises(CircuitBackendError) as info:
            breaker.initialize()
        assert "refused" in str(info.value).lower()
        assert "s3cret" not in str(info.value)

    def test_query_password_is_masked(
        self, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A password given as ?password= is masked in reprs, errors and log lines."""
        url = f"redis://127.0.0.1:{free_port()}/0?password=hunter2&socket_timeout=0.2"
        breaker = CircuitBreaker("redis", redis_url=url)
        caplog.set_level(logging.WARNING, logger="tnm.circuit")
        with pytest.raises(CircuitBackendError) as info:
            breaker.initialize()
        breaker.record_failure("svc", "x")  # degrades and logs
        texts = [
            repr(breaker),
            repr(breaker.backend),
            str(info.value),
            *(r.getMessage() for r in caplog.records),
        ]
        assert caplog.records
        assert all("hunter2" not in text for text in texts), texts
        assert "password=***" in repr(breaker.backend)

    def test_client_password_is_masked(
        self, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A ready client's password never appears in what the backend says."""
        client = redis.Redis(host="127.0.0.1", port=free_port(), password="hunter2", socket_timeout=0.2)
        breaker = CircuitBreaker("redis", client=client)
        with pytest.raises(CircuitBackendError) as info:
            breaker.initialize()
        assert "hunter2" not in str(info.value)

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"redis_url": "redis://127.0.0.1:6379/0?socket_timeout=abc"}, "redis_url"),
            ({"client": "redis://127.0.0.1:6379/0"}, "client"),
        ],
    )
    def test_bad_options_name_their_field(self, kwargs: dict[str, object], field: str) -> None:
        """A bad URL option or a URL given as client= fails at construction, naming the field."""
        with pytest.raises(InvalidConfigError) as info:
            CircuitBreaker("redis", **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
        if field == "client":
            assert isinstance(info.value, InvalidConfigTypeError)


class TestOperators:
    def test_operator_commands_keep_the_apps_thresholds(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """force_open and reset from a breaker with another policy (the CLI) keep what the app wrote."""
        app = make_redis_breaker(service_policies={"svc": ServicePolicy(max_failures=3)})
        app.record_failure("svc", "x")
        cli = make_redis_breaker()  # default policy: max_failures=5
        cli.force_open("svc", "maintenance")
        assert cli.state("svc").max_failures == 3
        cli.reset("svc")
        assert cli.state("svc").max_failures == 3
        assert app.state("svc").max_failures == 3

    def test_services_with_only_successes_are_listed(self, make_redis_breaker: MakeRedisBreaker) -> None:
        """A service that only ever succeeded is listed for other processes (and operators)."""
        app = make_redis_breaker()
        app.execute("healthy", lambda: 1)
        assert "healthy" in [s.service for s in make_redis_breaker().states()]


class TestScale:
    @pytest.mark.slow
    def test_an_idle_process_costs_the_same_with_many_circuits(self, redis_server: RedisServer) -> None:
        """An idle process's refreshes cost a constant few commands, with 10 or 3,000 circuits mirrored."""
        admin = redis_server.client()

        def idle_commands(count: int) -> int:
            breaker = CircuitBreaker(
                "redis", redis_url=redis_server.url, namespace=f"idle{count}", refresh_interval=0.05
            )
            breaker.initialize()
            for n in range(count):
                breaker.is_available(f"svc-{n}")
            assert wait_until_listening(redis_server, breaker, 30)  # the read after subscribing is over
            before = int(admin.info("stats")["total_commands_processed"])
            time.sleep(1.0)  # about 20 refresh rounds
            spent = int(admin.info("stats")["total_commands_processed"]) - before
            breaker.close()
            return spent

        few, many = idle_commands(10), idle_commands(3000)
        print(f"idle commands in 1 s: {few} with 10 circuits, {many} with 3,000")
        assert many < 300, many  # a single full read alone would be 3,000
        assert many <= 2 * few + 20, (few, many)


class TestIdleMirrors:
    def test_idle_mirrors_are_dropped_and_read_again_on_use(
        self, make_redis_breaker: MakeRedisBreaker
    ) -> None:
        """Mirrors idle for a whole meta_ttl_seconds go; a dropped service's next call reads Redis again."""
        app = make_redis_breaker(backend_options={})
        clock: ManualClock = app.clock  # type: ignore[assignment]
        for n in range(2000):
            app.is_available(f"svc-{n}")
        for step in range(2):
            clock.advance(301)
            app.execute(f"new-{step}", lambda: 1)
        assert len(app.backend.circuits) <= 2  # type: ignore[attr-defined]
        make_redis_breaker().force_open("svc-7", "maintenance")
        with pytest.raises(CircuitOpenError):
            app.execute("svc-7", lambda: 1)


MINIMAL_GRANTS = [
    *("+ping", "+evalsha", "+eval", "+subscribe", "+publish", "+set", "+get", "+incr", "+incrby", "+hget"),
    *("+hgetall", "+hset", "+hdel", "+hmget", "+hincrby", "+hlen", "+hkeys", "+del", "+exists", "+type"),
    *("+pexpire", "+persist"),
    *("+pttl", "+zadd", "+zcount", "+zcard", "+zrange", "+zrem", "+zremrangebyrank", "+zremrangebyscore"),
    *("+time", "+scan"),
]
"""The grants the guide lists (its 'Production Redis' section), with keys and channel of one namespace."""


class TestAccessControl:
    @pytest.mark.parametrize(
        ("taken_away", "named"),
        [
            ("&acl:circuit:events", "channel"),
            ("+evalsha", "evalsha"),
            ("+zadd", "zadd"),
            ("+publish", "publish"),
        ],
    )
    def test_a_missing_grant_fails_initialize_naming_it(
        self, redis_server: RedisServer, taken_away: str, named: str
    ) -> None:
        """initialize() refuses to start with a user that lacks one grant, and says which."""
        admin = redis_server.client()
        rules = ["on", ">pw", "~acl:circuit:*", "&acl:circuit:events", *MINIMAL_GRANTS]
        rules.remove(taken_away)
        admin.execute_command("ACL", "SETUSER", "limited", "reset", *rules)
        url = f"redis://limited:pw@127.0.0.1:{redis_server.port}/0"
        breaker = CircuitBreaker("redis", redis_url=url, namespace="acl:circuit")
        try:
            with pytest.raises(CircuitBackendError) as info:
                breaker.initialize()
            message = str(info.value)
            assert "lacks a grant" in message
            assert named in message.lower(), message
            assert "pw@" not in message
        finally:
            breaker.close()
            admin.execute_command("ACL", "DELUSER", "limited")

    def test_the_listed_grants_are_enough(self, redis_server: RedisServer) -> None:
        """A user with exactly the listed grants runs every operation, shared with another process."""
        admin = redis_server.client()
        admin.execute_command(
            "ACL", "SETUSER", "minimal", "reset", "on", ">pw", "~acl2:circuit:*", "&acl2:circuit:events",
            *MINIMAL_GRANTS,
        )  # fmt: skip
        url = f"redis://minimal:pw@127.0.0.1:{redis_server.port}/0"
        policy = ServicePolicy(max_failures=2, open_seconds=60)
        app = CircuitBreaker("redis", redis_url=url, namespace="acl2:circuit", default_policy=policy)
        other = CircuitBreaker("redis", redis_url=url, namespace="acl2:circuit", default_policy=policy)
        try:
            app.initialize()
            other.initialize()
            other.is_available("svc")
            app.record_failure("svc", "x")
            app.record_failure("svc", "x")
            assert wait_for(lambda: not other.is_available("svc"), 2)
            app.force_open("pg", "maintenance")
            app.reset("pg")
            assert {"svc", "pg"} <= {s.service for s in other.states()}
            assert not app.backend.degraded  # type: ignore[attr-defined]
        finally:
            app.close()
            other.close()
            admin.execute_command("ACL", "DELUSER", "minimal")


class TestReviewedEdges:
    def test_a_failed_restore_is_tried_again(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a data loss, a forced-open circuit whose restore failed once is restored next round."""
        app = make_redis_breaker(use_clock=False, backend_options={"refresh_interval": 0.05})
        make_redis_breaker().force_open("pg", "failover")
        assert wait_for(lambda: "pg" in redis_backend(app).overrides.known, 2)
        original = RedisCircuit.restore
        failures = [redis.TimeoutError("injected")]

        def flaky(circuit: RedisCircuit, op: str, reason: str) -> None:
            if failures:
                raise failures.pop()
            original(circuit, op, reason)

        monkeypatch.setattr(RedisCircuit, "restore", flaky)
        redis_server.client().flushall()
        assert wait_for(lambda: make_redis_breaker().state("pg").state is CircuitState.FORCED_OPEN, 5)
        assert failures == []

    def test_a_bad_side_key_keeps_the_stored_state(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A garbage permits key next to a valid forced-open state does not rewrite that state from an
        older view: the circuit stays forced open for everyone."""
        stale = make_redis_breaker()
        stale.execute("svc", lambda: 1)  # its last good view: closed
        make_redis_breaker().force_open("svc", "maintenance")
        keys = stale.backend.keys.for_service("svc")  # type: ignore[attr-defined]
        redis_server.client().set(keys[2], "garbage")
        assert stale.state("svc").state is CircuitState.FORCED_OPEN
        assert make_redis_breaker().state("svc").state is CircuitState.FORCED_OPEN

    @pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
    def test_non_finite_numbers_are_repaired(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer, value: str
    ) -> None:
        """An open-until of nan or inf is corrupt data: repaired, not an endless open circuit or an outage."""
        app = make_redis_breaker(max_failures=1, open_seconds=10, half_open_max_calls=1)
        app.record_failure("svc", "down")
        key = app.backend.keys.for_service("svc")[0]  # type: ignore[attr-defined]
        redis_server.client().hset(key, mapping={"s": "half_open", "ou": value})
        fresh = make_redis_breaker(max_failures=1, open_seconds=10, half_open_max_calls=1)
        clock: ManualClock = app.clock  # type: ignore[assignment]
        clock.advance(10)
        assert fresh.execute("svc", lambda: "trial") == "trial"
        assert not fresh.backend.degraded  # type: ignore[attr-defined]
        assert fresh.state("svc").trials_in_flight == 0

    def test_a_namespace_key_of_the_wrong_type_is_removed(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A hash where the epoch belongs is removed with a warning; the process stays shared."""
        app = make_redis_breaker(use_clock=False, backend_options={"refresh_interval": 0.05})
        admin = redis_server.client()
        swap = admin.pipeline(transaction=True)  # atomic: the refresher writes the epoch meanwhile
        swap.delete("test:circuit:epoch")
        swap.hset("test:circuit:epoch", "x", "y")
        swap.execute()
        assert wait_for(lambda: admin.type("test:circuit:epoch") == b"string", 5)  # a refresh round met it
        assert not app.backend.degraded  # type: ignore[attr-defined]

    def test_cancelled_trial_outcome_returns_the_permit(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A trial whose caller is cancelled while its outcome is being recorded still reports it."""
        policy = {"max_failures": 1, "open_seconds": 1, "half_open_max_calls": 1, "trial_timeout_seconds": 20}
        app = make_redis_breaker(**policy)
        other = make_redis_breaker(**policy)
        app.record_failure("svc", "down")
        clock: ManualClock = app.clock  # type: ignore[assignment]
        clock.advance(1)

        async def main() -> None:
            started = asyncio.Event()

            async def trial() -> int:
                started.set()
                await asyncio.sleep(0.05)
                return 1

            task = asyncio.create_task(app.execute_async("svc", trial))
            await asyncio.wait_for(started.wait(), 5)
            threading.Thread(
                target=lambda: redis_server.client().execute_command("CLIENT", "PAUSE", 300)
            ).start()
            await asyncio.sleep(0.1)  # the trial's success is being recorded on the paused server
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.5)  # the shielded report lands after the pause
            await app.aclose()

        asyncio.run(main())
        assert wait_for(lambda: other.state("svc").state is CircuitState.CLOSED, 3)


def test_a_disabled_circuit_survives_a_data_loss(
    make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
) -> None:
    """An operator's disable is restored after FLUSHALL, like a force_open."""
    app = make_redis_breaker(use_clock=False, backend_options={"refresh_interval": 0.05})
    make_redis_breaker().disable("search", "known flaky")
    assert wait_for(lambda: "search" in redis_backend(app).overrides.known, 2)
    redis_server.client().flushall()
    assert wait_for(lambda: make_redis_breaker().state("search").state is CircuitState.DISABLED, 5)


class TestHoldOpen:
    def test_hold_open_stretches_an_open_circuit_fleet_wide(
        self, make_redis_breaker: MakeRedisBreaker
    ) -> None:
        """hold_open keeps an open circuit open longer for every process, capped, never shorter,
        and does nothing to a closed one."""
        app = make_redis_breaker(max_failures=1, open_seconds=2, max_open_seconds=60)
        other = make_redis_breaker(max_failures=1, open_seconds=2, max_open_seconds=60)
        app.hold_open("svc", 30)  # closed: nothing to hold
        assert app.state("svc").state is CircuitState.CLOSED
        app.record_failure("svc", "HTTP 503")
        app.hold_open("svc", 30)
        assert other.state("svc").retry_after == pytest.approx(30)
        app.hold_open("svc", 10)  # never shortened
        assert other.state("svc").retry_after == pytest.approx(30)
        app.hold_open("svc", 600)  # capped
        assert other.state("svc").retry_after == pytest.approx(60)
