"""Every snippet of the seed USAGE.md works as written (on the local backend)."""

from __future__ import annotations

import asyncio
import inspect
from datetime import datetime
from functools import partial
from typing import Any

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, get_breaker
from tnm.circuit.exceptions import CircuitError, ReturnValuePolicyError
from tnm.circuit.exceptions import CircuitOpenError as CircuitOpenErrorFromExceptions
from tnm.circuit.policies import ReturnValuePolicy, ServicePolicy


class BadRequestException(Exception):
    pass


def seed_policies() -> tuple[ServicePolicy, dict[str, ServicePolicy]]:
    default_policy = ServicePolicy(window_seconds=60 * 5, max_failures=10)
    service_policies = {
        "elasticsearch": ServicePolicy(
            window_seconds=60 * 30, max_failures=10, ignore_exceptions=[BadRequestException]
        ),
        "rabbitmq": ServicePolicy(window_seconds=60, max_failures=3),
        "kafka": ServicePolicy(window_seconds=60, max_failures=5),
        "postgres": ServicePolicy(window_seconds=60, max_failures=5),
        "external-http": ServicePolicy(
            window_seconds=30, max_failures=3, on_exceptions=[BadRequestException]
        ),
    }
    return default_policy, service_policies


@pytest.fixture
def breaker() -> CircuitBreaker:
    default_policy, service_policies = seed_policies()
    breaker = CircuitBreaker(
        backend="local",
        default_policy=default_policy,
        service_policies=service_policies,
        # USAGE.md's "redis only" options: namespace and meta_ttl_seconds are accepted and
        # unused by the local backend; a redis_url with backend="local" is an error instead
        # (it would silently keep state per process), see test_policies.
        namespace="myapp:circuit",
        meta_ttl_seconds=300,
    )
    breaker.initialize()
    return breaker


class TestSharedSetup:
    def test_open_error_importable_from_root_and_exceptions(self) -> None:
        """The seed imports CircuitOpenError from both tnm.circuit and tnm.circuit.exceptions."""
        assert CircuitOpenError is CircuitOpenErrorFromExceptions
        assert issubclass(CircuitOpenError, CircuitError)

    def test_get_breaker_is_initialized_and_local(self) -> None:
        """get_breaker(...) returns a ready breaker on the local backend by default."""
        default_policy, service_policies = seed_policies()
        breaker = get_breaker(default_policy=default_policy, service_policies=service_policies)
        assert breaker.initialized
        assert breaker.backend.name == "local"
        assert breaker.policy_for("rabbitmq").max_failures == 3
        assert breaker.policy_for("unknown").max_failures == 10


class TestFourWays:
    def test_protect_sync_and_async(self, breaker: CircuitBreaker) -> None:
        """@breaker.protect works on def and async def."""

        @breaker.protect("my-service")
        def my_function() -> str:
            return "sync"

        @breaker.protect("my-async-service")
        async def my_async_function() -> str:
            return "async"

        assert my_function() == "sync"
        assert inspect.iscoroutinefunction(my_async_function)
        assert asyncio.run(my_async_function()) == "async"

    def test_execute(self, breaker: CircuitBreaker) -> None:
        """breaker.execute(service, fn) runs a sync callable."""

        def my_function() -> int:
            return 42

        assert breaker.execute("my-service", my_function) == 42

    def test_execute_async(self, breaker: CircuitBreaker) -> None:
        """await breaker.execute_async(service, fn) runs a coroutine function."""

        async def my_async_function() -> int:
            return 7

        async def main() -> int:
            return await breaker.execute_async("my-async-service", my_async_function)

        assert asyncio.run(main()) == 7

    def test_manual_control(self, breaker: CircuitBreaker) -> None:
        """record_failure / record_success / is_available / last_failure()["reason"] as in the seed."""
        calls = 0

        def my_function() -> None:
            nonlocal calls
            calls += 1
            try:
                raise RuntimeError("db down")
            except Exception as e:
                breaker.record_failure("my-service", str(e))
            else:
                breaker.record_success("my-service")

        for _ in range(10):
            my_function()
        assert not breaker.is_available("my-service")
        assert breaker.last_failure("my-service")["reason"] == "db down"  # type: ignore[index]


class TestReturnValuePolicySnippet:
    def test_status_code_policy_with_on_exceptions(self, breaker: CircuitBreaker) -> None:
        """The seed's HTTP example: a 500 raises ReturnValuePolicyError with .retval and .retval_policy."""

        class Response:
            def __init__(self, status_code: int) -> None:
                self.status_code = status_code

        policy = ReturnValuePolicy(retval_accessor="status_code", retval_in=[500, 502])
        responses = [Response(200), Response(500)]

        @breaker.protect(
            "external-http", on_retval_policy=policy, on_exceptions=[ConnectionError, TimeoutError]
        )
        async def call_external() -> Response:
            return responses.pop(0)

        async def main() -> None:
            assert (await call_external()).status_code == 200
            with pytest.raises(ReturnValuePolicyError) as info:
                await call_external()
            assert info.value.retval.status_code == 500
            assert info.value.retval_policy is policy

        asyncio.run(main())
        assert breaker.state("external-http").failures == 1


class TestFastAPISnippet:
    def test_last_failure_ts_converts_to_datetime(self, breaker: CircuitBreaker) -> None:
        """The seed formats last_failure['ts'] with datetime.fromtimestamp."""
        for _ in range(10):
            with pytest.raises(ConnectionError):
                breaker.execute(
                    "elasticsearch", _raise, ConnectionError("es down"), on_exceptions=[ConnectionError]
                )
        with pytest.raises(CircuitOpenError):
            breaker.execute("elasticsearch", lambda: None)
        last = breaker.last_failure("elasticsearch")
        assert last is not None
        assert last["reason"] == "ConnectionError: es down"
        assert abs(datetime.fromtimestamp(last["ts"]) - datetime.now()).total_seconds() < 60

    def test_execute_async_accepts_run_in_executor_future(self, breaker: CircuitBreaker) -> None:
        """The seed passes loop.run_in_executor(...) (a future) to execute_async."""

        def update_db(data: dict[str, Any]) -> dict[str, Any]:
            return {"updated": data}

        async def sync_update(payload: dict[str, Any]) -> Any:
            loop = asyncio.get_running_loop()
            return await breaker.execute_async(
                "postgres", loop.run_in_executor(None, partial(update_db, payload))
            )

        assert asyncio.run(sync_update({"a": 1})) == {"updated": {"a": 1}}


class TestCeleryAndWorkerSnippets:
    def test_is_available_then_record(self, breaker: CircuitBreaker) -> None:
        """The seed's Celery task: rejects once rabbitmq failed 3 times, records success after."""
        outcomes: list[str] = []

        def publish_to_rabbit(fail: bool) -> str:
            service = "rabbitmq"
            if not breaker.is_available(service):
                return "retry"
            try:
                if fail:
                    raise ConnectionError("broker gone")
            except Exception as exc:
                breaker.record_failure(service, str(exc))
                return "failed"
            else:
                breaker.record_success(service)
                return "ok"

        outcomes = [publish_to_rabbit(fail=True) for _ in range(3)] + [publish_to_rabbit(fail=False)]
        assert outcomes == ["failed", "failed", "failed", "retry"]

    def test_success_resets_count(self, breaker: CircuitBreaker) -> None:
        """record_success resets the failure count, as the seed's comment promises."""
        breaker.record_failure("external-http", "x")
        breaker.record_failure("external-http", "x")
        breaker.record_success("external-http")
        breaker.record_failure("external-http", "x")
        assert breaker.is_available("external-http")
        assert breaker.state("external-http").failures == 1


def _raise(exc: BaseException) -> None:
    raise exc
