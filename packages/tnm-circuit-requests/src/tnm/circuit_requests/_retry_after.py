"""Reading a ``Retry-After`` header: how long the upstream asked clients to stay away.

When a counted 503 or 429 opens the circuit, the transports hold it open that long
(``CircuitBreaker.hold_open``, capped by the policy's ``max_open_seconds``).
"""

from __future__ import annotations

import email.utils
from datetime import timezone

__all__ = ["retry_after_seconds"]


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds that ``value`` asks to wait, from ``now`` (epoch seconds); ``None`` if it says nothing.

    ``value`` is delta-seconds (``"120"``) or an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``); a date in the past means 0. Anything else,
    negative numbers included, is ignored rather than trusted.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are always GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)
