"""Bad options are refused when the interceptors are made, naming the option."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from tnm.circuit import CircuitBreaker, InvalidConfigError
from tnm.circuit_grpc import DEFAULT_FAILURE_CODES, CircuitBreakerInterceptor, aio_interceptors

MakeBreaker = Callable[..., CircuitBreaker]
MAKERS = [CircuitBreakerInterceptor, aio_interceptors]


class TestBadOptions:
    @pytest.mark.parametrize("make", MAKERS)
    @pytest.mark.parametrize(
        ("options", "field"),
        [
            ({}, "target"),
            ({"target": ""}, "target"),
            ({"target": b"host:1"}, "target"),
            ({"target": "h:1", "per_method": "yes"}, "per_method"),
            ({"target": "h:1", "failure_codes": "UNAVAILABLE"}, "failure_codes"),
            ({"target": "h:1", "failure_codes": [14]}, "failure_codes"),
            ({"target": "h:1", "failure_codes": [grpc.StatusCode.OK]}, "failure_codes"),
        ],
    )
    def test_refused_naming_the_option(
        self, make_breaker: MakeBreaker, make: Callable[..., object], options: dict[str, object], field: str
    ) -> None:
        """Each bad option raises InvalidConfigError (a ValueError or TypeError) whose field names it."""
        options = {"target": None, **options} if "target" not in options else options
        with pytest.raises(InvalidConfigError) as caught:
            make(make_breaker(), **options)
        assert caught.value.field == field

    @pytest.mark.parametrize("make", MAKERS)
    def test_breaker_must_be_a_breaker(self, make: Callable[..., object]) -> None:
        """Anything but a CircuitBreaker is refused, naming the breaker argument."""
        with pytest.raises(InvalidConfigError) as caught:
            make("local", target="h:1")
        assert caught.value.field == "breaker"

    def test_defaults(self, make_breaker: MakeBreaker) -> None:
        """The default codes say the server is down, overloaded, too slow or broken."""
        codes = grpc.StatusCode
        expected = {codes.UNAVAILABLE, codes.DEADLINE_EXCEEDED, codes.RESOURCE_EXHAUSTED, codes.INTERNAL}
        assert frozenset({*expected, codes.UNKNOWN}) == DEFAULT_FAILURE_CODES
        interceptor = CircuitBreakerInterceptor(make_breaker(), target="h:1")
        assert "target='h:1'" in repr(interceptor)
        assert len(aio_interceptors(make_breaker(), target="h:1")) == 4
