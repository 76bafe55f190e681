"""What counts for one call: the exception and return-value rules, resolved once.

``CallRules`` holds a decorated function's (or an ``execute`` call's) rules: the per-call
overrides if given, else the service policy's. ``ExceptionMatcher`` asks a list of
exception classes and predicates in one call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from . import _validate
from .exceptions import InvalidConfigTypeError
from .policies import ExceptionRule, ReturnValuePolicy, ServicePolicy

__all__ = ["FAILURE", "IGNORED", "TRIP", "CallRules", "ExceptionMatcher"]

IGNORED, FAILURE, TRIP = 0, 1, 2
"""What ``CallRules.judge`` makes of an exception."""

logger = logging.getLogger("tnm.circuit")


class ExceptionMatcher:
    """Exception classes and predicates asked as one: does an exception match any of them?

    A predicate that raises counts as "no match" (logged at WARNING): a broken rule must
    never take the caller's own exception away.
    """

    __slots__ = ("classes", "predicates")

    def __init__(self, rules: Iterable[ExceptionRule]) -> None:
        rules = tuple(rules)
        self.classes: tuple[type[BaseException], ...] = tuple(r for r in rules if isinstance(r, type))
        self.predicates: tuple[Callable[[BaseException], bool], ...] = tuple(
            r for r in rules if not isinstance(r, type)
        )

    def __call__(self, exc: BaseException) -> bool:
        if isinstance(exc, self.classes):
            return True
        for predicate in self.predicates:
            try:
                if predicate(exc):
                    return True
            except Exception:
                logger.warning(
                    "exception predicate %r raised on %s; taken as no match",
                    predicate,
                    type(exc).__name__,
                    exc_info=True,
                )
        return False


class CallRules:
    """What counts as a failure for one decorated function or one ``execute`` call.

    Each field is the per-call override if given, else the service policy's value
    (the service policy being the default policy when the service has none).
    """

    __slots__ = (
        "_counted",
        "_ignored",
        "counts_all",
        "failure_reason",
        "ignore",
        "on",
        "retval_policy",
        "trips",
    )

    def __init__(
        self,
        policy: ServicePolicy,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[ExceptionRule] | None = None,
        on_exceptions: Iterable[ExceptionRule] | None = None,
        on_retval_policy: ReturnValuePolicy | None = None,
    ) -> None:
        self.ignore: tuple[ExceptionRule, ...] = (
            _validate.exception_rules("ignore_exceptions", ignore_exceptions)
            if ignore_exceptions is not None
            else tuple(policy.ignore_exceptions)
        )
        self.on: tuple[ExceptionRule, ...] = (
            _validate.exception_rules("on_exceptions", on_exceptions)
            if on_exceptions is not None
            else tuple(policy.on_exceptions)
        )
        self._ignored = ExceptionMatcher(self.ignore) if self.ignore else None
        self._counted = ExceptionMatcher(self.on) if self.on else None
        if on_retval_policy is not None and not isinstance(on_retval_policy, ReturnValuePolicy):
            raise InvalidConfigTypeError(
                "on_retval_policy", f"must be a ReturnValuePolicy, got {on_retval_policy!r}"
            )
        self.trips = ExceptionMatcher(policy.open_on) if policy.open_on else None
        """The policy's ``open_on``: a failure it matches opens the circuit at once."""
        self.counts_all = not self.ignore and not self.on and self.trips is None
        """Every Exception is a failure and none opens at once: no check needed."""
        self.retval_policy = on_retval_policy or policy.on_retval_policy
        if failure_reason is not None and not isinstance(failure_reason, str):
            raise InvalidConfigTypeError("failure_reason", f"must be a str, got {failure_reason!r}")
        self.failure_reason = None if failure_reason is None else _validate.bounded_reason(failure_reason)

    def judge(self, exc: BaseException) -> int:
        """``IGNORED`` (0), ``FAILURE`` (1) or ``TRIP`` (2: a failure listed in ``open_on``, which
        opens the circuit at once). ``ignore_exceptions`` wins over both; an ``open_on`` match
        is a failure even when ``on_exceptions`` does not list it."""
        ignored, trips = self._ignored, self.trips
        if ignored is not None and ignored(exc):
            return IGNORED
        if trips is not None and trips(exc):
            return TRIP
        counted = self._counted
        return FAILURE if counted is None or counted(exc) else IGNORED

    @staticmethod
    def reason_for(exc: BaseException) -> str:
        return _validate.exception_reason(exc)
