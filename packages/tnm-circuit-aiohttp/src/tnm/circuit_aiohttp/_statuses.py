"""Which response statuses count as the upstream failing."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from tnm.circuit import InvalidConfigError, InvalidConfigTypeError, ReturnValuePolicy

__all__ = ["DEFAULT_FAILURE_STATUSES", "status_policy"]

DEFAULT_FAILURE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
"""Server errors that say the upstream is down or overloaded, and "too many requests"."""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def status_policy(failure_statuses: Iterable[int]) -> ReturnValuePolicy | None:
    """The policy that makes a response with one of these statuses a failure.

    Its predicate answers in one dict lookup (it runs on every response), with the reason
    an operator reads at a glance: ``"HTTP 503 Service Unavailable"``.

    ``None`` for an empty set: then the service policy's own ``on_retval_policy``, if
    any, judges responses.
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
        return reasons.get(getattr(response, "status", None))  # type: ignore[arg-type]

    return ReturnValuePolicy(predicate=failed_status)
