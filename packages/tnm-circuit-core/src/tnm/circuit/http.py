"""What the HTTP client adapters share: which response statuses count, ``Retry-After``, and
which circuit a request goes through.

``tnm-circuit-httpx``, ``tnm-circuit-requests`` and ``tnm-circuit-aiohttp`` judge responses,
read ``Retry-After`` and name a request's circuit (``host:port``) the same way; an adapter of
your own for another HTTP client can use the same rules::

    from tnm.circuit.http import DEFAULT_FAILURE_STATUSES, retry_after_seconds, status_policy

    breaker.caller(on_retval_policy=status_policy(DEFAULT_FAILURE_STATUSES, attribute="status"))
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterable
from datetime import timezone
from http import HTTPStatus
from typing import TypeVar

from .exceptions import InvalidConfigError, InvalidConfigTypeError
from .policies import ReturnValuePolicy

__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "retry_after_seconds",
    "service_namer",
    "status_policy",
    "upstream_name",
]

_Request = TypeVar("_Request")

_DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443, "ws": 80, "wss": 443}
"""The ports a URL of these schemes means when it names none."""

DEFAULT_FAILURE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
"""Server errors that say the upstream is down or overloaded, and "too many requests"."""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def status_policy(
    failure_statuses: Iterable[int], *, attribute: str = "status_code"
) -> ReturnValuePolicy | None:
    """The policy that makes a response with one of these statuses a failure.

    ``attribute`` names the response's status attribute (``status_code`` for httpx and
    requests, ``status`` for aiohttp). The predicate answers in one dict lookup (it runs
    on every response), with the reason an operator reads at a glance:
    ``"HTTP 503 Service Unavailable"``.

    ``None`` for an empty set: then the service policy's own ``on_retval_policy``, if
    any, judges responses. Anything but a collection of ints from 100 to 599 raises
    :class:`~tnm.circuit.InvalidConfigError` naming ``failure_statuses``.
    """
    if isinstance(failure_statuses, (str, bytes)) or not isinstance(failure_statuses, Iterable):
        raise InvalidConfigTypeError(
            "failure_statuses", f"must be a collection of HTTP status codes, got {failure_statuses!r}"
        )
    statuses = tuple(failure_statuses)
    for status in statuses:
        if not isinstance(status, int) or isinstance(status, bool):
            raise InvalidConfigTypeError("failure_statuses", f"must hold ints, got {status!r}")
        if not 100 <= status <= 599:
            raise InvalidConfigError("failure_statuses", f"{status} is not an HTTP status code (100-599)")
    if not statuses:
        return None
    reasons = {status: f"HTTP {status} {_phrase(status)}".rstrip() for status in sorted(set(statuses))}

    def failed_status(response: object) -> str | None:
        return reasons.get(getattr(response, attribute, None))  # type: ignore[arg-type]

    return ReturnValuePolicy(predicate=failed_status)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds that a ``Retry-After`` ``value`` asks to wait, from ``now`` (epoch seconds).

    ``value`` is delta-seconds (``"120"``) or an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``); a date in the past means 0. ``None`` when it
    says nothing: anything else, negative numbers included, is ignored rather than trusted.
    When a counted 503 or 429 opens a circuit, the adapters hold it open that long
    (:meth:`~tnm.circuit.CircuitBreaker.hold_open`, capped by ``max_open_seconds``).
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


def upstream_name(scheme: str, host: str | None, port: int | None) -> str | None:
    """A request's upstream as ``host:port`` (``api.example.com:443``), the scheme's default
    port filled in; ``None`` without a host.

    Given the URL's parts, never the URL: the name never holds a user name or password. An
    IPv6 host is bracketed (``[::1]:8080``). A scheme with no known default port and a URL
    without one give the host alone.
    """
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None:
        port = _DEFAULT_PORTS.get(scheme.lower())
        if port is None:
            return host
    return f"{host}:{port}"


def service_namer(
    service: str | Callable[[_Request], str] | None, default: Callable[[_Request], str | None]
) -> Callable[[_Request], str | None]:
    """Turn an adapter's ``service=`` option into ``(request) -> name``: ``None`` takes
    ``default`` (whose ``None`` means "not guarded": the client then raises its own error
    for a URL without a host), a string names one circuit for every request, a callable
    names each. Anything else, or an empty string, is refused naming ``service``."""
    if service is None:
        return default
    if isinstance(service, str):
        if not service:
            raise InvalidConfigError("service", "must not be empty")
        return lambda request: service
    if callable(service):
        return service
    raise InvalidConfigTypeError("service", f"must be a str or a callable (request) -> str, got {service!r}")
