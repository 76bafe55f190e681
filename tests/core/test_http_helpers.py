"""The Retry-After reader: seconds or an HTTP date, anything else ignored."""

from __future__ import annotations

import pytest

from tnm.circuit.http import retry_after_seconds, status_policy

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
