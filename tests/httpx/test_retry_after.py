"""The Retry-After reader: seconds or an HTTP date, anything else ignored."""

from __future__ import annotations

import pytest

from tnm.circuit_httpx._retry_after import retry_after_seconds

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
