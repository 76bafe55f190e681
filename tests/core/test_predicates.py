"""Predicates beside exception classes (tenacity's retry_if_exception / retry_if_result)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from tnm.circuit import (
    CircuitBreaker,
    InvalidConfigError,
    InvalidConfigTypeError,
    ReturnValuePolicy,
    ReturnValuePolicyError,
    ServicePolicy,
)

MakeBreaker = Callable[..., CircuitBreaker]


class HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _raise(exc: BaseException) -> None:
    raise exc


def server_error(exc: BaseException) -> bool:
    return getattr(exc, "status", 0) >= 500


class TestExceptionPredicates:
    def test_on_exceptions_predicate_counts_only_what_it_says(self, make_breaker: MakeBreaker) -> None:
        """on_exceptions=[predicate] counts a 503 and lets a 404 pass uncounted."""
        breaker = make_breaker(max_failures=1, on_exceptions=[server_error])
        with pytest.raises(HTTPError):
            breaker.execute("svc", _raise, HTTPError(404))
        assert breaker.is_available("svc")
        with pytest.raises(HTTPError):
            breaker.execute("svc", _raise, HTTPError(503))
        assert not breaker.is_available("svc")

    def test_classes_and_predicates_mix(self, make_breaker: MakeBreaker) -> None:
        """An exception counts when it is an instance of a listed class or a predicate says yes."""
        breaker = make_breaker(max_failures=2, on_exceptions=[TimeoutError, server_error])
        with pytest.raises(TimeoutError):
            breaker.execute("svc", _raise, TimeoutError())
        with pytest.raises(HTTPError):
            breaker.execute("svc", _raise, HTTPError(502))
        assert not breaker.is_available("svc")

    def test_ignore_predicate_beats_on(self, make_breaker: MakeBreaker) -> None:
        """ignore_exceptions=[predicate] wins over on_exceptions, as classes do."""
        breaker = make_breaker(max_failures=1)
        decorated = breaker.protect(
            "svc", on_exceptions=[HTTPError], ignore_exceptions=[lambda e: getattr(e, "status", 0) == 503]
        )(_raise)
        with pytest.raises(HTTPError):
            decorated(HTTPError(503))
        assert breaker.is_available("svc")
        with pytest.raises(HTTPError):
            decorated(HTTPError(500))
        assert not breaker.is_available("svc")

    def test_predicates_on_every_entry_point(self, make_breaker: MakeBreaker) -> None:
        """protect (sync and async), execute and execute_async all ask the predicate."""
        breaker = make_breaker(max_failures=1, on_exceptions=[server_error])

        async def araise(exc: BaseException) -> None:
            raise exc

        calls: list[Callable[[str, BaseException], Any]] = [
            lambda s, e: breaker.protect(s)(_raise)(e),
            lambda s, e: asyncio.run(breaker.protect(s)(araise)(e)),
            lambda s, e: breaker.execute(s, _raise, e),
            lambda s, e: asyncio.run(breaker.execute_async(s, araise, e)),
        ]
        for i, call in enumerate(calls):
            service = f"svc{i}"
            with pytest.raises(HTTPError):
                call(service, HTTPError(404))
            assert breaker.is_available(service)
            with pytest.raises(HTTPError):
                call(service, HTTPError(500))
            assert not breaker.is_available(service), i

    def test_predicate_that_raises_is_no_match(
        self, make_breaker: MakeBreaker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A predicate that raises is no match, logs a warning and never replaces the caller's error."""

        def broken(exc: BaseException) -> bool:
            raise RuntimeError("bug in predicate")

        breaker = make_breaker(max_failures=1, on_exceptions=[broken])
        with caplog.at_level(logging.WARNING, "tnm.circuit"), pytest.raises(HTTPError):
            breaker.execute("svc", _raise, HTTPError(500))
        assert breaker.is_available("svc")
        assert "predicate" in caplog.text

    def test_a_bare_predicate_is_one_rule(self) -> None:
        """A single predicate (not in a list) is taken as a one-entry list, like a bare class."""
        assert ServicePolicy(on_exceptions=server_error).on_exceptions == (server_error,)

    @pytest.mark.parametrize("field", ["on_exceptions", "ignore_exceptions"])
    @pytest.mark.parametrize("entry", [object, int, 42, "ValueError"])
    def test_entries_that_are_neither_are_refused(self, field: str, entry: Any) -> None:
        """A non-exception class or a non-callable entry is an InvalidConfigTypeError naming the field."""
        with pytest.raises(InvalidConfigTypeError) as info:
            ServicePolicy(**{field: [entry]})
        assert info.value.field == field
        breaker = CircuitBreaker()
        with pytest.raises(InvalidConfigTypeError) as info:
            breaker.execute("svc", lambda: None, **{field: [entry]})
        assert info.value.field == field


class Resp:
    def __init__(self, status: int) -> None:
        self.status_code = status


class TestReturnValuePredicate:
    def test_predicate_alone_is_a_policy(self, make_breaker: MakeBreaker) -> None:
        """ReturnValuePolicy(predicate=...) alone counts the values it says yes to."""
        policy = ReturnValuePolicy(predicate=lambda r: r.status_code >= 500)
        breaker = make_breaker(max_failures=1)
        assert breaker.execute("svc", Resp, 200, on_retval_policy=policy).status_code == 200
        assert breaker.is_available("svc")
        with pytest.raises(ReturnValuePolicyError) as info:
            breaker.execute("svc", Resp, 503, on_retval_policy=policy)
        assert info.value.retval.status_code == 503
        assert not breaker.is_available("svc")

    def test_predicate_gets_the_accessed_value(self) -> None:
        """With retval_accessor the predicate receives the value reached, not the result."""
        seen: list[object] = []

        def check(value: object) -> bool:
            seen.append(value)
            return value == 503

        policy = ReturnValuePolicy(retval_accessor="status_code", predicate=check)
        assert policy.failure_reason(Resp(503)) is not None
        assert policy.failure_reason(Resp(200)) is None
        assert seen == [503, 200]

    def test_string_answer_is_the_reason(self) -> None:
        """A predicate answering a non-empty string makes it the failure's reason."""
        policy = ReturnValuePolicy(predicate=lambda r: "HTTP 503 Service Unavailable" if r == 503 else None)
        assert policy.failure_reason(503) == "HTTP 503 Service Unavailable"
        assert policy.failure_reason(200) is None

    def test_predicate_or_other_rules(self) -> None:
        """The predicate is one more rule: a value fails when any rule matches."""
        policy = ReturnValuePolicy(retval_none=True, predicate=lambda r: r == "bad")
        assert policy.failure_reason(None) is not None
        assert policy.failure_reason("bad") is not None
        assert policy.failure_reason("good") is None

    def test_predicate_that_raises_is_no_match(self) -> None:
        """A predicate that raises is no match: the caller keeps the result."""

        def broken(value: object) -> bool:
            raise RuntimeError("bug")

        assert ReturnValuePolicy(predicate=broken).failure_reason(1) is None

    def test_non_callable_predicate_is_refused(self) -> None:
        """predicate must be callable: InvalidConfigTypeError naming the field."""
        with pytest.raises(InvalidConfigTypeError) as info:
            ReturnValuePolicy(predicate=3)  # type: ignore[arg-type]
        assert info.value.field == "predicate"

    def test_no_rule_still_refused(self) -> None:
        """Without any rule, the predicate included, the policy is refused."""
        with pytest.raises(InvalidConfigError):
            ReturnValuePolicy()
