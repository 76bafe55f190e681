"""What the HTTP client adapters share: the Retry-After reader, upstream names, ``service=``."""

from __future__ import annotations

import pytest

from tnm.circuit import InvalidConfigError, InvalidConfigTypeError
from tnm.circuit.http import retry_after_seconds, service_namer, status_policy, upstream_name

NOW = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT


class TestRetryAfterSeconds:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            ("120", 120.0),
            (" 7 ", 7.0),
            ("0", 0.0),
            ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),
            ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
        ],
    )
    def test_seconds_and_dates(self, value: str, seconds: float) -> None:
        """Delta-seconds are taken as is; a date counts from now, and a past date means no wait."""
        assert retry_after_seconds(value, NOW) == seconds

    @pytest.mark.parametrize("value", [None, "", "-5", "1.5", "soon", "١٢٠", "Wed, 99 Oct 2015 07:30:00 GMT"])
    def test_anything_else_says_nothing(self, value: str | None) -> None:
        """Missing, negative, fractional or malformed values are ignored, never trusted."""
        assert retry_after_seconds(value, NOW) is None


class TestStatusPolicy:
    def test_reads_the_named_status_attribute(self) -> None:
        """The policy judges the attribute it is told to read, and names the status in its reason."""

        class Response:
            def __init__(self, status: int) -> None:
                self.status = status

        policy = status_policy({503}, attribute="status")
        assert policy is not None
        assert policy.predicate is not None
        assert policy.predicate(Response(503)) == "HTTP 503 Service Unavailable"
        assert not policy.predicate(Response(200))

    def test_an_empty_set_leaves_judging_to_the_service_policy(self) -> None:
        """No statuses: no policy (the service policy's own on_retval_policy judges)."""
        assert status_policy(()) is None


class TestUpstreamName:
    @pytest.mark.parametrize(
        ("scheme", "host", "port", "name"),
        [
            ("https", "api.example.com", None, "api.example.com:443"),
            ("HTTP", "api.example.com", None, "api.example.com:80"),
            ("wss", "feed.example.com", None, "feed.example.com:443"),
            ("http", "10.0.0.7", 8080, "10.0.0.7:8080"),
            ("http", "::1", 8080, "[::1]:8080"),
            ("ftp", "files.example.com", None, "files.example.com"),
            ("https", None, 443, None),
            ("https", "", None, None),
        ],
    )
    def test_host_and_port(self, scheme: str, host: str | None, port: int | None, name: str | None) -> None:
        """host:port with the scheme's default port filled in; IPv6 bracketed; no host, no name."""
        assert upstream_name(scheme, host, port) == name


class TestServiceNamer:
    def test_default_fixed_or_per_request(self) -> None:
        """None keeps the adapter's default, a string names every request, a callable each one."""
        assert service_namer(None, lambda r: f"d:{r}")("x") == "d:x"
        assert service_namer("search", lambda r: None)("x") == "search"
        assert service_namer(lambda r: f"c:{r}", lambda r: None)("x") == "c:x"

    def test_bad_values_name_the_field(self) -> None:
        """An empty name or something not callable is refused at once, naming ``service``."""
        with pytest.raises(InvalidConfigError) as empty:
            service_namer("", lambda r: None)
        with pytest.raises(InvalidConfigTypeError) as other:
            service_namer(42, lambda r: None)  # type: ignore[arg-type]
        assert (empty.value.field, other.value.field) == ("service", "service")
