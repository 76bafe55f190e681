"""Bad options are refused when the middleware is made, naming the option; service names."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest
from yarl import URL

from tnm.circuit import CircuitBreaker, InvalidConfigError
from tnm.circuit_aiohttp import DEFAULT_FAILURE_STATUSES, CircuitBreakerMiddleware, authority

from ..http_tables import AUTHORITIES, BAD_OPTIONS

MakeBreaker = Callable[..., CircuitBreaker]


class FakeRequest:
    """What ``authority`` reads of an ``aiohttp.ClientRequest``: its URL."""

    def __init__(self, url: str) -> None:
        self.url = URL(url)


class TestBadOptions:
    @pytest.mark.parametrize(
        ("options", "field"),
        [
            *BAD_OPTIONS,
        ],
    )
    def test_refused_naming_the_option(
        self, make_breaker: MakeBreaker, options: dict[str, object], field: str
    ) -> None:
        """Each bad option raises InvalidConfigError (a ValueError or TypeError) whose field names it."""
        with pytest.raises(InvalidConfigError) as caught:
            CircuitBreakerMiddleware(make_breaker(), **options)  # type: ignore[arg-type]
        assert caught.value.field == field

    def test_breaker_must_be_a_breaker(self) -> None:
        """Anything but a CircuitBreaker is refused, naming the breaker argument."""
        with pytest.raises(InvalidConfigError) as caught:
            CircuitBreakerMiddleware(None)  # type: ignore[arg-type]
        assert caught.value.field == "breaker"

    def test_defaults(self, make_breaker: MakeBreaker) -> None:
        """The default statuses are 429 and the 5xx that say the upstream is down or overloaded."""
        assert frozenset({429, 500, 502, 503, 504}) == DEFAULT_FAILURE_STATUSES
        assert "CircuitBreakerMiddleware(" in repr(CircuitBreakerMiddleware(make_breaker()))


class TestAuthority:
    @pytest.mark.parametrize(
        ("url", "name"),
        [
            *AUTHORITIES,
            ("https://bob:s3cret@api.example.com/", "api.example.com:443"),
        ],
    )
    def test_host_and_port(self, url: str, name: str) -> None:
        """The name is host:port with the scheme's port filled in; never the user name or password."""
        assert authority(FakeRequest(url)) == name  # type: ignore[arg-type]

    def test_aiohttp_has_middlewares(self) -> None:
        """The aiohttp in use takes client middlewares (3.12 or later), as the package requires."""
        assert "middlewares" in aiohttp.ClientSession.__init__.__code__.co_varnames
