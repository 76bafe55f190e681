"""protect / execute / execute_async: metadata, overrides, return values, fallbacks, safety."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

import pytest

from tnm.circuit import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    EventKind,
    InvalidConfigTypeError,
    ReturnValuePolicy,
    ReturnValuePolicyError,
    ServicePolicy,
)
from tnm.circuit.testing import ManualClock, capture_events, trip

MakeBreaker = Callable[..., CircuitBreaker]


class TestWrapperMetadata:
    def test_sync_wrapper_keeps_identity(self) -> None:
        """Name, docstring, __wrapped__ and signature survive (FastAPI reads the signature)."""
        breaker = CircuitBreaker()

        def search(q: str, limit: int = 10, *, exact: bool = False) -> list[str]:
            """Search the index."""
            return [q] * limit

        wrapped = breaker.protect("es")(search)
        assert wrapped.__name__ == "search"
        assert wrapped.__doc__ == "Search the index."
        assert wrapped.__wrapped__ is search  # type: ignore[attr-defined]
        assert inspect.signature(wrapped) == inspect.signature(search)
        assert wrapped("a", limit=2) == ["a", "a"]

    def test_async_wrapper_is_coroutine_function(self) -> None:
        """A protected async def is still a coroutine function with the same signature."""
        breaker = CircuitBreaker()

        async def fetch(url: str) -> str:
            return url

        wrapped = breaker.protect("http")(fetch)
        assert inspect.iscoroutinefunction(wrapped)
        assert inspect.signature(wrapped) == inspect.signature(fetch)
        assert asyncio.run(wrapped("u")) == "u"

    def test_methods(self) -> None:
        """protect works on methods."""
        breaker = CircuitBreaker()

        class Client:
            @breaker.protect("svc")
            def get(self, key: str) -> str:
                return key.upper()

        assert Client().get("k") == "K"


class TestNeverMasks:
    def test_exception_and_result_pass_through(self) -> None:
        """The caller receives the very exception object and result object."""
        breaker = CircuitBreaker()
        error = ConnectionError("down")
        result = object()
        with pytest.raises(ConnectionError) as info:
            breaker.execute("svc", _raiser, error)
        assert info.value is error
        assert breaker.execute("svc", lambda: result) is result

    def test_broken_listener_never_breaks_the_call(self, caplog: pytest.LogCaptureFixture) -> None:
        """A listener that raises is logged; the call still returns its result."""
        breaker = CircuitBreaker()

        def bad_listener(event: object) -> None:
            raise RuntimeError("listener bug")

        breaker.add_listener(bad_listener)
        with caplog.at_level(logging.ERROR, logger="tnm.circuit"):
            assert breaker.execute("svc", lambda: 5) == 5
            with pytest.raises(ValueError, match="mine"):
                breaker.execute("svc", _raiser, ValueError("mine"))
        assert "listener" in caplog.text

    def test_storage_failure_never_breaks_the_call(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """If recording an outcome fails inside the breaker, the caller still gets its own outcome."""
        breaker = CircuitBreaker()
        circuit = breaker._circuit("svc")

        def broken(*args: Any) -> None:
            raise OSError("store exploded")

        for method in ("on_failure", "on_success", "aon_failure"):
            monkeypatch.setattr(type(circuit), method, broken)
        circuit.dirty = True  # force the success path to record
        with caplog.at_level(logging.ERROR, logger="tnm.circuit"):
            assert breaker.execute("svc", lambda: "result") == "result"
            with pytest.raises(KeyError):
                breaker.execute("svc", _raiser, KeyError("own"))

            async def main() -> None:
                with pytest.raises(KeyError):
                    await breaker.execute_async("svc", _araiser, KeyError("own"))

            asyncio.run(main())
        assert "could not record" in caplog.text


class BreakingClock(ManualClock):
    """A ManualClock that raises once ``broken``: what the breaker reads inside its recorder."""

    broken = False

    def monotonic(self) -> float:
        if self.broken:
            raise OSError("clock exploded")
        return super().monotonic()


# Each way a ``protect`` wrapper records a failure without a helper frame of its own.
RECORDER_PATHS: dict[str, dict[str, Any]] = {
    "count policy": {"policy": {"max_failures": 5}},
    "failure-rate policy": {"policy": {"max_failures": None, "failure_rate_threshold": 0.5}},
    "count and rate policy": {"policy": {"max_failures": 5, "failure_rate_threshold": 0.5}},
    "slow-call policy": {"policy": {"max_failures": 5, "slow_call_seconds": 60.0}},
    "fixed failure reason": {"policy": {"max_failures": 5}, "protect": {"failure_reason": "db down"}},
    "exception rules": {"policy": {"max_failures": 5}, "protect": {"ignore_exceptions": [ZeroDivisionError]}},
    "a listener": {"policy": {"max_failures": 5}, "listener": True},
}


class TestRecorderFailures:
    """Whatever fails inside the breaker while it records a failure, the caller gets the call's
    own exception (not chained to the breaker's) and the breaker's error is logged."""

    @pytest.mark.parametrize("path", sorted(RECORDER_PATHS))
    def test_sync_and_async_calls_raise_their_own_exception(
        self, path: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        setup = RECORDER_PATHS[path]
        clock = BreakingClock()
        breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(**setup["policy"]))
        if setup.get("listener"):
            breaker.add_listener(lambda event: None)
        own = KeyError("own")

        def failing() -> None:
            clock.broken = True  # (during the call: what the breaker reads after it fails)
            raise own

        async def afailing() -> None:
            failing()

        call = breaker.protect("svc", **setup.get("protect", {}))(failing)
        acall = breaker.protect("svc", **setup.get("protect", {}))(afailing)
        with caplog.at_level(logging.ERROR, logger="tnm.circuit"):
            with pytest.raises(KeyError) as raised:
                call()
            assert raised.value is own
            assert "could not record an outcome for 'svc'" in caplog.text
            assert "clock exploded" in caplog.text
            caplog.clear()
            clock.broken = False
            with pytest.raises(KeyError) as raised:
                asyncio.run(acall())
            assert raised.value is own
            assert "could not record an outcome for 'svc'" in caplog.text
        clock.broken = False
        failing_again = breaker.protect("svc", **setup.get("protect", {}))(_raiser)
        with pytest.raises(KeyError):
            failing_again(KeyError("again"))  # and the breaker records again
        assert breaker.state("svc").failures >= 1

    def test_a_log_filter_that_raises_does_not_replace_the_callers_exception(self) -> None:
        """The app's own logging raises while the breaker logs its error (a filter, say): the
        caller still gets the call's own exception, sync, async and through ``execute``."""

        def exploding_filter(record: logging.LogRecord) -> bool:
            raise RuntimeError("filter exploded")

        clock = BreakingClock()
        breaker = CircuitBreaker(clock=clock)
        own = KeyError("own")

        def failing() -> None:
            clock.broken = True
            raise own

        async def afailing() -> None:
            failing()

        logger = logging.getLogger("tnm.circuit")
        logger.addFilter(exploding_filter)
        try:
            for call in (
                breaker.protect("svc")(failing),
                lambda: asyncio.run(breaker.protect("svc")(afailing)()),
                lambda: breaker.execute("svc", failing),
            ):
                with pytest.raises(KeyError) as raised:
                    call()
                assert raised.value is own
                clock.broken = False
        finally:
            logger.removeFilter(exploding_filter)

    def test_a_timed_success_keeps_its_result(self, caplog: pytest.LogCaptureFixture) -> None:
        """Under a slow-call policy, a clock that fails while the call runs: the caller gets the
        call's result, sync and async, and the error is logged."""
        clock = BreakingClock()
        breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(slow_call_seconds=60.0))

        def works() -> str:
            clock.broken = True
            return "result"

        async def aworks() -> str:
            return works()

        with caplog.at_level(logging.ERROR, logger="tnm.circuit"):
            assert breaker.protect("svc")(works)() == "result"
            clock.broken = False
            assert asyncio.run(breaker.protect("svc")(aworks)()) == "result"
            clock.broken = False
            assert breaker.execute("svc", works) == "result"
        assert "clock exploded" in caplog.text

    def test_on_a_shared_store(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        from tnm.circuit.testing import fake_redis_breaker

        own = KeyError("own")

        def failing() -> None:
            raise own

        def broken(*args: Any) -> None:
            raise OSError("store exploded")

        with fake_redis_breaker(default_policy=ServicePolicy(max_failures=5)) as breaker:
            call = breaker.protect("svc")(failing)
            with pytest.raises(KeyError):
                call()  # (the first call reads the shared state: the next one runs inline)
            monkeypatch.setattr(type(breaker._circuit("svc")), "on_failure", broken)  # type: ignore[attr-defined]
            with caplog.at_level(logging.ERROR, logger="tnm.circuit"), pytest.raises(KeyError) as raised:
                call()
            assert raised.value is own
            assert "could not record an outcome for 'svc'" in caplog.text
            assert "store exploded" in caplog.text

    def test_on_a_backend_of_your_own(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A backend object passed as ``backend=`` whose ``on_exception`` raises (it does not say
        it never does) is called inside a guard."""
        from tnm.circuit.backends.local import LocalBackend, LocalCircuit

        class RaisingCircuit(LocalCircuit):
            on_exception_never_raises = False

            @property
            def on_exception(self) -> Callable[[int, BaseException], None]:
                def record(token: int, exc: BaseException) -> None:
                    raise OSError("store exploded")

                return record

        class RaisingBackend(LocalBackend):
            def circuit(self, service: str, *args: Any) -> LocalCircuit:
                return RaisingCircuit(service, *args)

        breaker = CircuitBreaker(backend=RaisingBackend())
        own = KeyError("own")

        def failing() -> None:
            raise own

        async def afailing() -> None:
            raise own

        with caplog.at_level(logging.ERROR, logger="tnm.circuit"):
            with pytest.raises(KeyError) as raised:
                breaker.protect("svc")(failing)()
            assert raised.value is own
            with pytest.raises(KeyError) as raised:
                asyncio.run(breaker.protect("svc")(afailing)())
            assert raised.value is own
        logged = [record for record in caplog.records if "could not record" in record.getMessage()]
        assert len(logged) == 2
        assert "store exploded" in caplog.text

    def test_an_exception_whose_str_raises_still_counts(self) -> None:
        """A failure's reason is ``"Type: message"``; when ``str()`` of the exception raises, it is
        the type alone, and the failure counts (on a store that writes the reason at once too)."""
        from tnm.circuit.testing import fake_redis_breaker

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no str")

        def failing() -> None:
            raise Unprintable

        local = CircuitBreaker(default_policy=ServicePolicy(max_failures=2))
        listened = CircuitBreaker(default_policy=ServicePolicy(max_failures=2))
        listened.add_listener(lambda event: None)  # (the reason is worked out at once)
        with fake_redis_breaker(default_policy=ServicePolicy(max_failures=2)) as shared:
            for breaker in (local, listened, shared):  # (local: worked out when read)
                call = breaker.protect("svc")(failing)
                for _ in range(2):
                    with pytest.raises(Unprintable):
                        call()
                snapshot = breaker.state("svc")
                assert snapshot.state is CircuitState.OPEN
                assert snapshot.last_failure is not None
                assert snapshot.last_failure["reason"] == "Unprintable"


class TestOverrides:
    def test_per_call_beats_service_beats_default(self, make_breaker: MakeBreaker) -> None:
        """on_exceptions given per call wins over the service's, which wins over the default's."""
        breaker = make_breaker(
            max_failures=1,
            on_exceptions=[KeyError],
            service_policies={"svc": ServicePolicy(max_failures=1, on_exceptions=[ValueError])},
        )
        # default policy: only KeyError counts
        with pytest.raises(ValueError):
            breaker.execute("other", _raiser, ValueError())
        assert breaker.is_available("other")
        # service policy: ValueError counts, KeyError does not
        with pytest.raises(KeyError):
            breaker.execute("svc", _raiser, KeyError())
        assert breaker.is_available("svc")
        # per call: only TypeError counts
        with pytest.raises(ValueError):
            breaker.execute("svc", _raiser, ValueError(), on_exceptions=[TypeError])
        assert breaker.is_available("svc")
        with pytest.raises(TypeError):
            breaker.execute("svc", _raiser, TypeError(), on_exceptions=[TypeError])
        assert not breaker.is_available("svc")

    def test_ignore_beats_on(self) -> None:
        """An exception both ignored and listed in on_exceptions is ignored."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=1))
        with pytest.raises(ConnectionResetError):
            breaker.execute(
                "svc",
                _raiser,
                ConnectionResetError(),
                on_exceptions=[ConnectionError],
                ignore_exceptions=[ConnectionResetError],
            )
        assert breaker.is_available("svc")

    def test_protect_resolves_at_decoration_execute_at_call(self) -> None:
        """protect fixes its overrides once; execute takes new ones on every call."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=1))
        decorated = breaker.protect("a", ignore_exceptions=[ValueError])(_raiser)
        with pytest.raises(ValueError):
            decorated(ValueError())
        assert breaker.is_available("a")
        with pytest.raises(ValueError):
            breaker.execute("b", _raiser, ValueError(), ignore_exceptions=[ValueError])
        assert breaker.is_available("b")
        with pytest.raises(ValueError):
            breaker.execute("b", _raiser, ValueError())
        assert not breaker.is_available("b")

    def test_failure_reason_override(self) -> None:
        """failure_reason replaces the computed reason."""
        breaker = CircuitBreaker()
        with pytest.raises(OSError):
            breaker.execute("svc", _raiser, OSError("secret host 10.0.0.1"), failure_reason="db down")
        assert breaker.last_failure("svc") is not None
        assert breaker.last_failure("svc")["reason"] == "db down"  # type: ignore[index]


class TestExecuteOptions:
    def test_signature_shows_the_options(self) -> None:
        """help() and inspect show execute's five keyword-only options, after the call's own
        positional arguments."""
        breaker = CircuitBreaker()
        parameters = inspect.signature(breaker.execute).parameters
        options = [name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert options == [
            "failure_reason",
            "ignore_exceptions",
            "on_exceptions",
            "on_retval_policy",
            "fallback",
        ]
        assert all(parameters[name].default is None for name in options)
        assert list(parameters)[:3] == ["service", "func", "args"]
        assert breaker.execute.__name__ == "execute"
        assert CircuitBreaker.execute.__qualname__ == "CircuitBreaker.execute"

    def test_the_call_keeps_its_own_keywords_beside_the_options(self, clock: ManualClock) -> None:
        """The options are taken out; every other keyword reaches the function, also when an
        option is given, and an option given as None is as if left out."""
        breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=1))
        seen: list[dict[str, Any]] = []

        def record(*args: Any, **kwargs: Any) -> str:
            seen.append({"args": args, **kwargs})
            return "live"

        assert breaker.execute("svc", record, 1, limit=2) == "live"
        assert breaker.execute("svc", record, 1, limit=3, fallback=None, failure_reason=None) == "live"
        assert breaker.execute("svc", record, limit=4, fallback=lambda **kw: f"fb {kw}") == "live"
        assert seen == [{"args": (1,), "limit": 2}, {"args": (1,), "limit": 3}, {"args": (), "limit": 4}]
        with pytest.raises(OSError):
            breaker.execute("svc", _raiser, OSError("x"), failure_reason="db down", ignore_exceptions=None)
        assert breaker.last_failure("svc")["reason"] == "db down"  # type: ignore[index]
        assert breaker.execute("svc", record, limit=5, fallback=lambda **kw: f"fb {kw}") == "fb {'limit': 5}"
        with pytest.raises(InvalidConfigTypeError, match="fallback"):
            breaker.execute("svc", record, fallback="not callable")


class Resp:
    def __init__(self, status: int, body: dict[str, Any] | None = None) -> None:
        self.status_code = status
        self.body = body or {}

    def get_code(self, offset: int = 0, *, scale: int = 1) -> int:
        return (self.status_code + offset) * scale


class TestReturnValues:
    @pytest.mark.parametrize(
        ("policy", "value", "fails"),
        [
            (ReturnValuePolicy(retval_none=True), None, True),
            (ReturnValuePolicy(retval_none=True), 0, False),
            (ReturnValuePolicy(retval=False), False, True),
            (ReturnValuePolicy(retval=False), True, False),
            (ReturnValuePolicy(retval_in=["", "error"]), "error", True),
            (ReturnValuePolicy(retval_in=[[1]]), [1], True),  # unhashable values work
            (ReturnValuePolicy(retval_accessor="status_code", retval_in=[500, 502]), Resp(502), True),
            (ReturnValuePolicy(retval_accessor="status_code", retval_in=[500, 502]), Resp(200), False),
            (ReturnValuePolicy(retval_accessor="body.code", retval=7), Resp(200, {"code": 7}), True),
            (ReturnValuePolicy(retval_accessor="data.code", retval=7), {"data": {"code": 7}}, True),
            (ReturnValuePolicy(retval_accessor="get_code", retval=500), Resp(500), True),
            (
                ReturnValuePolicy(
                    retval_accessor="get_code",
                    retval_accessor_args=(1,),
                    retval_accessor_kwargs={"scale": 2},
                    retval=1002,
                ),
                Resp(500),
                True,
            ),
            (ReturnValuePolicy(retval_accessor="missing.attr", retval_none=True), None, True),
        ],
    )
    def test_rules(self, policy: ReturnValuePolicy, value: Any, fails: bool) -> None:
        """Each rule, accessor and accessor call matches what it should."""
        assert (policy.failure_reason(value) is not None) is fails

    def test_comparison_that_raises_is_no_match(self) -> None:
        """A value whose == raises is not a failure and does not break the call."""

        class Weird:
            def __eq__(self, other: object) -> bool:
                raise RuntimeError("no compare")

            __hash__ = object.__hash__

        assert ReturnValuePolicy(retval=1).failure_reason(Weird()) is None

    def test_matching_value_records_and_raises(self, make_breaker: MakeBreaker) -> None:
        """A matching return value is recorded as a failure and raised with .retval."""
        breaker = make_breaker(max_failures=2)
        policy = ReturnValuePolicy(retval_accessor="status_code", retval_in=[503])
        response = Resp(503)
        for _ in range(2):
            with pytest.raises(ReturnValuePolicyError) as info:
                breaker.execute("http", lambda: response, on_retval_policy=policy)
            assert info.value.retval is response
        assert breaker.state("http").state is CircuitState.OPEN
        assert "status_code=503" in breaker.last_failure("http")["reason"]  # type: ignore[index]

    def test_service_policy_retval(self, make_breaker: MakeBreaker) -> None:
        """A ReturnValuePolicy set on the ServicePolicy applies without per-call overrides."""
        breaker = make_breaker(on_retval_policy=ReturnValuePolicy(retval_none=True))
        with pytest.raises(ReturnValuePolicyError):
            breaker.execute("svc", lambda: None)

    @pytest.mark.parametrize("listener", ["none", "metrics", "every event"])
    def test_each_result_is_judged_once_through_protect(self, listener: str) -> None:
        """A protect wrapper's (sync and async) results go through the return-value policy's
        predicate once each, whoever listens, and a failing one is recorded and raised."""
        judged: list[int] = []

        def is_failure(value: int) -> bool:
            judged.append(value)
            return value < 0

        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=3))
        if listener != "none":
            breaker.add_listener(lambda event: None, calls=listener == "every event")
        policy = ReturnValuePolicy(predicate=is_failure)
        sync_call = breaker.protect("sync", on_retval_policy=policy)(lambda value: value)

        async def value_of(value: int) -> int:
            return value

        async_call = breaker.protect("async", on_retval_policy=policy)(value_of)
        assert sync_call(1) == 1
        assert asyncio.run(async_call(2)) == 2
        with pytest.raises(ReturnValuePolicyError):
            sync_call(-1)
        with pytest.raises(ReturnValuePolicyError):
            asyncio.run(async_call(-2))
        assert sync_call(3) == 3  # (a failure recorded: the circuit has something to reset)
        assert asyncio.run(async_call(4)) == 4
        assert judged == [1, 2, -1, -2, 3, 4]
        assert breaker.state("sync").failures == breaker.state("async").failures == 0  # reset by 3, 4


class TestFallback:
    def test_fallback_serves_rejected_calls_only(self, make_breaker: MakeBreaker) -> None:
        """fallback gets the call's arguments when rejected, and is not used otherwise."""
        breaker = make_breaker(max_failures=1)

        @breaker.protect("svc", fallback=lambda x: f"cached {x}")
        def get(x: str) -> str:
            if x == "bad":
                raise ConnectionError()
            return f"live {x}"

        assert get("a") == "live a"
        with pytest.raises(ConnectionError):
            get("bad")
        assert get("b") == "cached b"
        assert breaker.execute("svc", get, "c", fallback=lambda x: "fb") == "fb"

    def test_async_fallback(self, make_breaker: MakeBreaker) -> None:
        """An async fallback is awaited; a sync one is returned as is."""
        breaker = make_breaker(max_failures=1)
        trip(breaker, "svc")

        async def afallback() -> str:
            return "async fb"

        @breaker.protect("svc", fallback=afallback)
        async def call() -> str:
            return "live"

        async def main() -> None:
            assert await call() == "async fb"
            assert await breaker.execute_async("svc", call, fallback=lambda: "sync fb") == "sync fb"

        asyncio.run(main())

    def test_fallback_event(self, make_breaker: MakeBreaker) -> None:
        """Rejections are reported as 'rejected' or 'fallback' events."""
        breaker = make_breaker(max_failures=1)
        trip(breaker, "svc")
        with capture_events(breaker) as events:
            breaker.execute("svc", lambda: 1, fallback=lambda: 2)
            with pytest.raises(CircuitOpenError):
                breaker.execute("svc", lambda: 1)
        assert [e.kind for e in events] == [EventKind.FALLBACK, EventKind.REJECTED]


class TestExecuteAsync:
    def test_accepts_coroutine_callable_and_future(self) -> None:
        """A coroutine, a coroutine function with args, a lambda returning one, and a future all work."""
        breaker = CircuitBreaker()

        async def add(a: int, b: int) -> int:
            return a + b

        async def main() -> None:
            assert await breaker.execute_async("svc", add(1, 2)) == 3
            assert await breaker.execute_async("svc", add, 2, b=3) == 5
            assert await breaker.execute_async("svc", lambda: add(3, 4)) == 7
            future = asyncio.get_running_loop().create_future()
            future.set_result("f")
            assert await breaker.execute_async("svc", future) == "f"

        asyncio.run(main())

    def test_rejected_coroutine_is_closed(self, clock: ManualClock) -> None:
        """A coroutine object passed to a rejected call is closed, not left never-awaited."""
        breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=1))
        trip(breaker, "svc")
        ran = False

        async def work() -> None:
            nonlocal ran
            ran = True

        async def main() -> None:
            coro = work()
            with pytest.raises(CircuitOpenError):
                await breaker.execute_async("svc", coro)
            assert coro.cr_frame is None  # closed

        asyncio.run(main())  # filterwarnings=error would fail on "never awaited"
        assert not ran

    def test_rejects_non_awaitable(self) -> None:
        """Something neither callable nor awaitable is a clear type error."""
        breaker = CircuitBreaker()
        with pytest.raises(TypeError):
            asyncio.run(breaker.execute_async("svc", 42))  # type: ignore[arg-type]

    def test_async_failures_count(self, make_breaker: MakeBreaker) -> None:
        """Failures of awaited calls open the circuit."""
        breaker = make_breaker(max_failures=2)

        async def main() -> None:
            for _ in range(2):
                with pytest.raises(TimeoutError):
                    await breaker.execute_async("svc", _araiser, TimeoutError())
            with pytest.raises(CircuitOpenError):
                await breaker.execute_async("svc", _araiser, TimeoutError())

        asyncio.run(main())


class TestListeners:
    def test_events_for_each_outcome(self, make_breaker: MakeBreaker, clock: ManualClock) -> None:
        """Listeners get successes, failures, ignored calls, state changes and rejections."""
        breaker = make_breaker(max_failures=1, open_seconds=1, ignore_exceptions=[KeyError])
        with capture_events(breaker) as events:
            breaker.execute("svc", lambda: 1)
            with pytest.raises(KeyError):
                breaker.execute("svc", _raiser, KeyError())
            with pytest.raises(OSError):
                breaker.execute("svc", _raiser, OSError("x"))
            with pytest.raises(CircuitOpenError):
                breaker.execute("svc", lambda: 1)
            clock.advance(1)
            breaker.execute("svc", lambda: 1)
        kinds = [(e.kind.value, e.state.value) for e in events]
        assert kinds == [
            ("success", "closed"),
            ("ignored", "closed"),
            ("failure", "open"),
            ("state_change", "open"),
            ("rejected", "open"),
            ("state_change", "half_open"),
            ("success", "closed"),
            ("state_change", "closed"),
        ]
        opened = events[3]
        assert (opened.previous_state, opened.reason) == (CircuitState.CLOSED, "OSError: x")
        assert {e.service for e in events} == {"svc"}
        assert all(e.ts <= clock.time() for e in events)

    def test_remove_listener(self) -> None:
        """A removed listener hears nothing more."""
        breaker = CircuitBreaker()
        heard: list[object] = []
        breaker.add_listener(heard.append)
        breaker.execute("svc", lambda: None)
        breaker.remove_listener(heard.append)
        breaker.execute("svc", lambda: None)
        assert len(heard) == 1


def _raiser(exc: BaseException) -> None:
    raise exc


async def _araiser(exc: BaseException) -> None:
    raise exc


class TestProgrammingErrors:
    def test_execute_non_callable_is_a_config_error_not_a_failure(self, make_breaker: MakeBreaker) -> None:
        """execute("s", 42) raises InvalidConfigTypeError and records no failure of "s"."""
        breaker = make_breaker(max_failures=1)
        with capture_events(breaker) as events, pytest.raises(InvalidConfigTypeError) as info:
            breaker.execute("s", 42)  # type: ignore[arg-type]
        assert info.value.field == "func"
        assert events == []
        snap = breaker.state("s")
        assert (snap.state, snap.failures, snap.last_failure) == (CircuitState.CLOSED, 0, None)


class TestFailureReasons:
    @pytest.mark.parametrize("path", ["protect", "execute", "protect_async"])
    def test_exception_without_message_has_no_dangling_colon(
        self, make_breaker: MakeBreaker, path: str
    ) -> None:
        """An exception with an empty message is recorded as its type name alone."""

        class Boom(Exception):
            pass

        breaker = make_breaker(max_failures=5)

        def sync() -> None:
            raise Boom()

        async def coro() -> None:
            raise Boom()

        calls = {
            "protect": lambda: breaker.protect("svc")(sync)(),
            "execute": lambda: breaker.execute("svc", sync),
            "protect_async": lambda: asyncio.run(breaker.protect("svc")(coro)()),
        }
        with pytest.raises(Boom):
            calls[path]()
        last = breaker.last_failure("svc")
        assert last is not None
        assert last["reason"] == "Boom"
        with pytest.raises(Boom):
            breaker.execute("svc", lambda: (_ for _ in ()).throw(Boom("card declined")))
        assert breaker.last_failure("svc")["reason"] == "Boom: card declined"  # type: ignore[index]
