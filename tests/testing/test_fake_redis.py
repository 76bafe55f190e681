"""tnm.circuit.testing.fake_redis_breaker: the Redis backend and its real Lua script on fakeredis."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest

from tnm.circuit import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    EventKind,
    InvalidConfigError,
    ServicePolicy,
    _fake_redis,
)
from tnm.circuit.testing import ManualClock, capture_events, fake_redis_breaker, half_open, trip

POLICY = ServicePolicy(max_failures=3, open_seconds=30, half_open_max_calls=1)


@pytest.fixture
def processes() -> Iterator[Callable[..., CircuitBreaker]]:
    """Breakers on one fake server and one ManualClock, each standing for one process."""
    server = fakeredis.FakeServer()
    clock = ManualClock()
    made: list[CircuitBreaker] = []

    def make(**kwargs: object) -> CircuitBreaker:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("default_policy", POLICY)
        breaker = fake_redis_breaker(server=server, **kwargs)  # type: ignore[arg-type]
        made.append(breaker)
        return breaker

    yield make
    for breaker in made:
        breaker.close()


class TestSharedState:
    def test_a_trip_is_in_every_mirror_when_the_call_returns(
        self, processes: Callable[..., CircuitBreaker]
    ) -> None:
        """After the failure that opens the circuit returns, another breaker rejects without waiting."""
        web, worker = processes(), processes()
        for round_ in range(30):
            assert worker.execute("payments", lambda: "ok") == "ok"  # a warm mirror: no round trip
            trip(web, "payments")
            with pytest.raises(CircuitOpenError):
                worker.execute("payments", lambda: "ok")
            web.reset("payments")
            assert worker.execute("payments", lambda r=round_: r) == round_

    def test_a_breaker_initialized_again_hears_at_once(
        self, processes: Callable[..., CircuitBreaker], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Closed and initialized again (an app's shutdown, startup), a breaker sees the next trip at once."""
        api, worker = processes(), processes()
        subscribe = _fake_redis._PubSub.subscribe

        def slow_subscribe(self: Any, *args: Any, **kwargs: Any) -> Any:
            time.sleep(0.05)  # a listener thread slow to start, as on a busy machine
            return subscribe(self, *args, **kwargs)

        monkeypatch.setattr(_fake_redis._PubSub, "subscribe", slow_subscribe)
        for _ in range(5):
            api.close()
            api.initialize()  # starts its listener again, which subscribes on its own thread
            assert api.execute("payments", lambda: "ok") == "ok"
            trip(worker, "payments")
            with pytest.raises(CircuitOpenError):
                api.execute("payments", lambda: "ok")
            worker.reset("payments")

    def test_a_stalled_listener_delays_a_call_by_the_bound_only(
        self, processes: Callable[..., CircuitBreaker], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A listener that does not answer delays each call by the bound, then catches up when it resumes."""
        monkeypatch.setattr(_fake_redis, "BARRIER_TIMEOUT", 0.2)
        api, worker = processes(), processes()
        assert api.execute("payments", lambda: "ok") == "ok"
        stalled_client, resume = api.backend.client(), threading.Event()  # type: ignore[attr-defined]
        get_message = _fake_redis._PubSub.get_message

        def stalled(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.owner is stalled_client:
                resume.wait(30)
            return get_message(self, *args, **kwargs)

        monkeypatch.setattr(_fake_redis._PubSub, "get_message", stalled)
        started = time.monotonic()
        trip(worker, "payments")  # three failures, each waiting at most 0.2 s for the stalled listener
        assert time.monotonic() - started < 5
        resume.set()
        worker.record_failure("payments", "again")  # returns once the resumed listener caught up
        with pytest.raises(CircuitOpenError):
            api.execute("payments", lambda: "ok")

    def test_trial_permits_are_shared(self, processes: Callable[..., CircuitBreaker]) -> None:
        """In half-open, a trial permit taken by one breaker is seen as taken by the other."""
        web, worker = processes(), processes()
        assert half_open(web, "payments").state is CircuitState.HALF_OPEN
        token = web._circuit("payments").acquire()  # a trial in flight in the "web" process
        assert token > 0
        assert worker.is_available("payments") is False
        assert worker.state("payments").retry_after == POLICY.trial_timeout_seconds  # the permit's deadline
        with pytest.raises(CircuitOpenError):
            worker.execute("payments", lambda: "ok")
        web._circuit("payments").on_success(token)
        assert worker.state("payments").state is CircuitState.CLOSED
        assert worker.execute("payments", lambda: "ok") == "ok"

    def test_events_come_from_the_breaker_that_caused_them(
        self, processes: Callable[..., CircuitBreaker]
    ) -> None:
        """The breaker whose failure opened the circuit reports the change; the other reports rejections."""
        web, worker = processes(), processes()
        with capture_events(web) as web_events, capture_events(worker) as worker_events:
            trip(web, "payments")
            with pytest.raises(CircuitOpenError):
                worker.execute("payments", lambda: "ok")
        assert [e.kind for e in web_events] == [EventKind.FAILURE] * 3 + [EventKind.STATE_CHANGE]
        assert [e.kind for e in worker_events] == [EventKind.REJECTED]

    def test_states_finds_services_written_by_others(self, processes: Callable[..., CircuitBreaker]) -> None:
        """states() scans the fake server's keys: a service only another breaker used is listed."""
        web, worker = processes(), processes()
        web.record_failure("search", "timeout")
        assert [s.service for s in worker.states()] == ["search"]
        assert worker.states()[0].failures == 1

    def test_force_open_reaches_every_breaker(self, processes: Callable[..., CircuitBreaker]) -> None:
        """An operator's force_open through one breaker holds every breaker's circuit open."""
        web, worker = processes(), processes()
        worker.execute("payments", lambda: None)
        web.force_open("payments", "maintenance")
        with pytest.raises(CircuitOpenError) as info:
            worker.execute("payments", lambda: None)
        assert info.value.retry_after is None


class TestTime:
    def test_manual_clock_drives_the_script(self, processes: Callable[..., CircuitBreaker]) -> None:
        """With a ManualClock the script's times are the clock's: retry_after is exact and moves with it."""
        web = processes()
        assert trip(web, "payments").retry_after == 30
        web.clock.advance(12.5)  # type: ignore[attr-defined]
        assert web.state("payments").retry_after == pytest.approx(17.5)

    def test_without_a_clock_time_comes_from_the_fake_servers_time(self) -> None:
        """Without clock=, the script reads TIME on the fake server, as it does on a real one."""
        with fake_redis_breaker(default_policy=POLICY) as breaker:
            snap = trip(breaker, "payments")
            assert snap.state is CircuitState.OPEN
            assert 29 < snap.retry_after <= 30  # type: ignore[operator]
            assert breaker.last_failure("payments")["reason"] == "tripped by a test"  # type: ignore[index]


class TestAsync:
    async def _fail_three_times(self, breaker: CircuitBreaker) -> None:
        async def down() -> None:
            raise ConnectionError("down")

        for _ in range(3):
            with pytest.raises(ConnectionError):
                await breaker.execute_async("payments", down)

    def test_async_calls_on_several_event_loops(self, processes: Callable[..., CircuitBreaker]) -> None:
        """Async calls share the fake server from any event loop, one after another (as test clients do)."""
        web, worker = processes(), processes()
        asyncio.run(self._fail_three_times(web))
        with pytest.raises(CircuitOpenError):
            worker.execute("payments", lambda: None)
        web.reset("payments")
        asyncio.run(self._fail_three_times(web))  # a second loop, the same breaker
        assert worker.state("payments").state is CircuitState.OPEN

    @pytest.mark.asyncio
    async def test_an_async_trip_is_seen_by_another_breaker(
        self, processes: Callable[..., CircuitBreaker]
    ) -> None:
        """A trip made on the async path is in the other breaker's mirror when the await returns."""
        web, worker = processes(), processes()
        assert await worker.execute_async("payments", asyncio.sleep, 0, "warm") == "warm"
        await self._fail_three_times(web)
        with pytest.raises(CircuitOpenError):
            await worker.execute_async("payments", asyncio.sleep, 0)


class TestArguments:
    @pytest.mark.parametrize("name", ["backend", "redis_url", "client", "async_client"])
    def test_backend_arguments_are_refused(self, name: str) -> None:
        """Arguments that would build another backend are an InvalidConfigError naming them."""
        with pytest.raises(InvalidConfigError) as info:
            fake_redis_breaker(**{name: "redis://127.0.0.1"})
        assert info.value.field == name

    def test_server_must_be_a_fake_server(self) -> None:
        """A server that is not a fakeredis.FakeServer is an InvalidConfigError on field server."""
        with pytest.raises(InvalidConfigError) as info:
            fake_redis_breaker(server="redis://127.0.0.1")  # type: ignore[arg-type]
        assert info.value.field == "server"

    def test_breaker_options_are_passed_on(self) -> None:
        """Namespace and policies reach the Redis backend as with CircuitBreaker."""
        server = fakeredis.FakeServer()
        with fake_redis_breaker(server=server, namespace="shop", service_policies={"es": POLICY}) as breaker:
            breaker.record_failure("es", "x")
            assert breaker.backend.name == "redis"
            keys = fakeredis.FakeRedis(server=server).keys("shop:*")
        assert b"shop:{es}:state" in keys

    @pytest.mark.parametrize("missing", ["fakeredis", "lupa", "redis"])
    def test_missing_extra_says_what_to_install(self, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
        """Without fakeredis, lupa or redis-py (only tnm-circuit-core installed), the first error
        names the extra that makes it work: tnm-circuit-core[testing], never [redis]."""
        monkeypatch.setitem(sys.modules, missing, None)
        if missing == "redis":  # as if never imported: nothing of redis-py is loaded
            for name in [m for m in sys.modules if m.startswith(("tnm.circuit.backends.redis", "redis."))]:
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.delitem(sys.modules, "tnm.circuit._fake_redis")
        with pytest.raises(ImportError, match=r"pip install 'tnm-circuit-core\[testing\]'") as info:
            fake_redis_breaker()
        assert "[redis]" not in str(info.value)


class TestLifetime:
    def test_a_closed_breakers_fake_server_is_freed(self) -> None:
        """Once its breakers are closed and dropped, a fake server is garbage, not kept by the helper."""
        server = fakeredis.FakeServer()
        alive = weakref.ref(server)
        breaker = fake_redis_breaker(server=server, default_policy=POLICY)
        breaker.record_failure("payments", "x")
        asyncio.run(breaker.execute_async("payments", asyncio.sleep, 0))
        breaker.close()
        del breaker, server
        gc.collect()
        assert alive() is None
