"""Bad options are refused when the adapter is made, naming the option; service names."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from tnm.circuit import CircuitBreaker, InvalidConfigError
from tnm.circuit_requests import DEFAULT_FAILURE_STATUSES, CircuitBreakerAdapter, authority

from ..http_tables import AUTHORITIES, BAD_OPTIONS

MakeBreaker = Callable[..., CircuitBreaker]


def prepared(url: str) -> requests.PreparedRequest:
    return requests.Request("GET", url).prepare()


class TestBadOptions:
    @pytest.mark.parametrize(
        ("options", "field"),
        [
            *BAD_OPTIONS,
            ({"failure_statuses": [True]}, "failure_statuses"),
        ],
    )
    def test_refused_naming_the_option(
        self, make_breaker: MakeBreaker, options: dict[str, object], field: str
    ) -> None:
        """Each bad option raises InvalidConfigError (a ValueError or TypeError) whose field names it."""
        with pytest.raises(InvalidConfigError) as caught:
            CircuitBreakerAdapter(make_breaker(), **options)  # type: ignore[arg-type]
        assert caught.value.field == field

    def test_breaker_must_be_a_breaker(self) -> None:
        """Anything but a CircuitBreaker is refused, naming the breaker argument."""
        with pytest.raises(InvalidConfigError) as caught:
            CircuitBreakerAdapter("local")  # type: ignore[arg-type]
        assert caught.value.field == "breaker"

    def test_defaults(self, make_breaker: MakeBreaker) -> None:
        """The default statuses are 429 and the 5xx that say the upstream is down or overloaded."""
        assert frozenset({429, 500, 502, 503, 504}) == DEFAULT_FAILURE_STATUSES
        adapter = CircuitBreakerAdapter(make_breaker(), pool_maxsize=3, max_retries=2)
        assert adapter.max_retries.total == 2
        assert "CircuitBreakerAdapter(" in repr(adapter)


class TestAuthority:
    @pytest.mark.parametrize(
        ("url", "name"),
        [
            *AUTHORITIES,
        ],
    )
    def test_host_and_port(self, url: str, name: str) -> None:
        """The name is host:port with the scheme's port filled in, whatever the path or query."""
        assert authority(prepared(url)) == name

    def test_userinfo_never_in_the_name(self) -> None:
        """A user name and password in the URL do not reach the service name."""
        assert authority(prepared("https://bob:s3cret@api.example.com/")) == "api.example.com:443"
