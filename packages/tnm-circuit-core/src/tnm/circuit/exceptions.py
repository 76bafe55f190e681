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

from collections.abc import Callable, Mapping
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
    """Root of every error raised by tnm-circuit itself.

    ``repr`` reads like ``str`` (``CircuitOpenError("circuit 'x' is open: ...")``), so
    log lines that show an error's repr (Celery's "Retry in ...") stay readable.
    """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InvalidConfigError(CircuitError, ValueError):
    """A policy, service name or backend option is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        """What is wrong, without the field's name (a CLI names its own option instead)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.message))


class InvalidConfigTypeError(InvalidConfigError, TypeError):
    """An option has the wrong type (for example a non-exception class in an exception list)."""


class CircuitBackendError(CircuitError):
    """The state store failed.

    Raised by ``initialize`` when the store is unreachable, by ``force_open`` and
    ``reset`` when the change could not be stored, and by calls that the breaker
    rejects while the store is down if it is configured with
    ``on_storage_error="raise"``. ``service`` names the circuit concerned, or is
    ``None`` when the failure concerns every circuit (connecting, for one).
    The store's own error is chained as ``__cause__``, with secrets masked.
    """

    def __init__(self, message: str, *, service: str | None = None) -> None:
        super().__init__(message)
        self.service = service

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_backend_error, (str(self), self.service))


def _rebuild_backend_error(message: str, service: str | None) -> CircuitBackendError:
    return CircuitBackendError(message, service=service)


def _masked_copy(exc: BaseException, message: str) -> BaseException:
    """``exc`` again, with ``message`` (its text, secrets masked) and its traceback, to chain
    as a cause: the original's text may hold a password."""
    try:
        copy = type(exc)(message)
    except Exception:
        copy = RuntimeError(f"{type(exc).__name__}: {message}")
    return copy.with_traceback(exc.__traceback__)


def _chain_masked(
    error: CircuitBackendError, cause: BaseException | None, scrub: Callable[[str], str]
) -> CircuitBackendError:
    """``error`` with ``cause`` (the store's own error, its text passed through ``scrub``) as
    ``__cause__``, so a caller sees what the store said without a secret in it."""
    if cause is not None:
        error.__cause__ = _masked_copy(cause, scrub(str(cause)))
    return error


class CircuitOpenError(CircuitError):
    """The circuit for ``service`` rejected the call.

    ``retry_after`` is the number of seconds until a trial call may run, or ``None``
    when an operator forced the circuit open (it stays open until reset).
    ``last_failure`` is ``{"reason": str, "ts": epoch seconds}`` or ``None``;
    ``failures`` is the count that opened the circuit, of ``max_failures`` in ``window_seconds``.

    Every field lives in ``args`` (so the error pickles as is, for Celery's result
    backend) and the message is built only when read: rejecting stays cheap.
    Arguments are positional: ``CircuitOpenError(service, retry_after, last_failure,
    state, failures, max_failures, window_seconds)``; all but ``service`` are optional.
    """

    if TYPE_CHECKING:

        def __init__(
            self,
            service: str,
            retry_after: float | None = None,
            last_failure: Mapping[str, Any] | None = None,
            state: CircuitState | str = "open",
            failures: int = 0,
            max_failures: int = 0,
            window_seconds: float = 0.0,
            /,
        ) -> None: ...

    def _arg(self, index: int, default: Any) -> Any:
        args = self.args
        return args[index] if len(args) > index else default

    @property
    def service(self) -> str:
        return self._arg(0, "")  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float | None:
        return self._arg(1, None)  # type: ignore[no-any-return]

    @property
    def last_failure(self) -> Mapping[str, Any] | None:
        return self._arg(2, None)  # type: ignore[no-any-return]

    @property
    def state(self) -> str:
        return str(getattr(self._arg(3, "open"), "value", self._arg(3, "open")))

    @property
    def failures(self) -> int:
        return self._arg(4, 0)  # type: ignore[no-any-return]

    @property
    def max_failures(self) -> int:
        return self._arg(5, 0)  # type: ignore[no-any-return]

    @property
    def window_seconds(self) -> float:
        return self._arg(6, 0.0)  # type: ignore[no-any-return]

    def __str__(self) -> str:
        if self.max_failures:
            parts = [
                f"circuit {self.service!r} is {self.state}: {self.failures} failure(s) "
                f"in a {self.window_seconds:g}s window (threshold {self.max_failures})"
            ]
        else:  # opened by a rate trigger, by an operator, or no count given
            parts = [f"circuit {self.service!r} is {self.state}"]
        if self.last_failure is not None:
            parts.append(f"last failure: {self.last_failure.get('reason')}")
        if self.retry_after is None:
            parts.append("held open until reset")
        else:
            parts.append(f"retry after {self.retry_after:.3f}s")
        return "; ".join(parts)


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
