"""Every error the breaker raises, in one tree::

    CircuitError
    ├── CircuitOpenError        a call was rejected: .service, .retry_after, .last_failure
    ├── ReturnValuePolicyError  a return value counted as a failure: .retval, .retval_policy
    ├── CircuitBackendError     the state store failed and the breaker was told to say so
    └── InvalidConfigError      (also a ValueError) bad input, .field names it
        └── InvalidConfigTypeError  (also a TypeError) input of the wrong type

The protected call's own exceptions are never wrapped or replaced: they reach the
caller as they were raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .policies import ReturnValuePolicy
    from .state import CircuitState

__all__ = [
    "CircuitBackendError",
    "CircuitError",
    "CircuitOpenError",
    "InvalidConfigError",
    "InvalidConfigTypeError",
    "ReturnValuePolicyError",
]


class CircuitError(Exception):
    """Root of every error raised by tnm-circuit itself."""


class InvalidConfigError(CircuitError, ValueError):
    """A policy, service name or backend option is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidConfigTypeError(InvalidConfigError, TypeError):
    """An option has the wrong type (for example a non-exception class in an exception list)."""


class CircuitBackendError(CircuitError):
    """The state store failed (only raised when the breaker is configured to surface it)."""


class CircuitOpenError(CircuitError):
    """The circuit for ``service`` rejected the call.

    ``retry_after`` is the number of seconds until a trial call may run, or ``None``
    when an operator forced the circuit open (it stays open until reset).
    ``last_failure`` is ``{"reason": str, "ts": epoch seconds}`` or ``None``.
    The message is built only when it is read, so rejecting stays cheap.
    """

    def __init__(
        self,
        service: str,
        retry_after: float | None,
        last_failure: Mapping[str, Any] | None,
        *,
        state: CircuitState | str = "open",
        failures: int = 0,
        max_failures: int = 0,
        window_seconds: float = 0.0,
    ) -> None:
        super().__init__(service)
        self.service = service
        self.retry_after = retry_after
        self.last_failure = last_failure
        self.state = state
        self.failures = failures
        self.max_failures = max_failures
        self.window_seconds = window_seconds

    def __str__(self) -> str:
        state = getattr(self.state, "value", self.state)
        parts = [
            f"circuit {self.service!r} is {state}: {self.failures} failure(s) "
            f"in a {self.window_seconds:g}s window (threshold {self.max_failures})"
        ]
        if self.last_failure is not None:
            parts.append(f"last failure: {self.last_failure.get('reason')}")
        if self.retry_after is None:
            parts.append("held open until reset")
        else:
            parts.append(f"retry after {self.retry_after:.3f}s")
        return "; ".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the error picklable (Celery stores it in the result backend).
        return (
            _rebuild_open_error,
            (
                self.service,
                self.retry_after,
                dict(self.last_failure) if self.last_failure is not None else None,
                getattr(self.state, "value", self.state),
                self.failures,
                self.max_failures,
                self.window_seconds,
            ),
        )


def _rebuild_open_error(
    service: str,
    retry_after: float | None,
    last_failure: Mapping[str, Any] | None,
    state: str,
    failures: int,
    max_failures: int,
    window_seconds: float,
) -> CircuitOpenError:
    return CircuitOpenError(
        service,
        retry_after,
        last_failure,
        state=state,
        failures=failures,
        max_failures=max_failures,
        window_seconds=window_seconds,
    )


class ReturnValuePolicyError(CircuitError):
    """The protected call returned a value that its ``ReturnValuePolicy`` counts as a failure.

    The value itself is kept in ``retval`` so the caller loses nothing.
    """

    def __init__(self, service: str, retval: Any, retval_policy: ReturnValuePolicy, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.retval = retval
        self.retval_policy = retval_policy
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.service, self.retval, self.retval_policy, self.reason))
