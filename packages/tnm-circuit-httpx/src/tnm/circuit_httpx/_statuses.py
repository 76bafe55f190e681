"""Which response statuses count as the upstream failing."""

from __future__ import annotations

from collections.abc import Iterable

from tnm.circuit import InvalidConfigError, InvalidConfigTypeError, ReturnValuePolicy

__all__ = ["DEFAULT_FAILURE_STATUSES", "status_policy"]

DEFAULT_FAILURE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
"""Server errors that say the upstream is down or overloaded, and "too many requests"."""


def status_policy(failure_statuses: Iterable[int]) -> ReturnValuePolicy | None:
    """The return-value policy that makes a response with one of these statuses a failure.

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
    return ReturnValuePolicy(retval_accessor="status_code", retval_in=sorted(set(statuses)))
