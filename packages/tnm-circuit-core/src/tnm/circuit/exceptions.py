"""Every error the breaker raises, in one tree::

    CircuitError
    ├── CircuitOpenError        a call was rejected: .service, .retry_after, .opened_by, .last_failure
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
    ``last_failure`` is ``{"reason": str, "ts": epoch seconds}`` or ``None``.
    ``opened_by`` says why the circuit opened (``"failures"``, ``"failure_rate"``,
    ``"slow_call_rate"``, ``"trial_failed"``, ``"operator"``, ``"open_on"``; ``None`` if
    unknown), and ``failures``, ``calls``, ``failure_rate`` and ``slow_call_rate`` are the
    figures that opened it: the same numbers ``breaker.state(service)`` reports while the
    circuit is open or half-open. ``failures`` counts the failures inside ``window_seconds``
    (since the last success) for a count trigger (``max_failures``), or the failed calls in
    the rate window when there is no count trigger.

    Every field lives in ``args`` (so the error pickles as is, for Celery's result
    backend), and the message is built only when read. A backend may hand the fields
    over deferred (see ``_deferred_open_error``): they are then worked out the first time
    anything reads them, from what the circuit held at the rejection, so that a rejection
    nobody inspects costs little more than raising.
    Arguments are positional: ``CircuitOpenError(service, retry_after, last_failure,
    state, failures, max_failures, window_seconds, opened_by, calls, failure_rate,
    slow_call_rate)``; all but ``service`` are optional.
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
            opened_by: str | None = None,
            calls: int | None = None,
            failure_rate: float | None = None,
            slow_call_rate: float | None = None,
            /,
        ) -> None: ...

    @property
    def args(self) -> tuple[Any, ...]:
        args: tuple[Any, ...] = _base_args.__get__(self)
        if len(args) == 4 and args[1] is _DEFERRED:  # (service, _DEFERRED, fill, capture)
            args = args[2](args[0], args[3])
            _base_args.__set__(self, args)
        return args

    @args.setter
    def args(self, value: tuple[Any, ...]) -> None:
        _base_args.__set__(self, tuple(value))

    def __reduce__(self) -> tuple[Any, ...]:
        state = getattr(self, "__dict__", None)
        return (type(self), self.args, state) if state else (type(self), self.args)

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

    @property
    def opened_by(self) -> str | None:
        return self._arg(7, None)  # type: ignore[no-any-return]

    @property
    def calls(self) -> int | None:
        return self._arg(8, None)  # type: ignore[no-any-return]

    @property
    def failure_rate(self) -> float | None:
        return self._arg(9, None)  # type: ignore[no-any-return]

    @property
    def slow_call_rate(self) -> float | None:
        return self._arg(10, None)  # type: ignore[no-any-return]

    def _figures(self) -> str:
        window = f"in a {self.window_seconds:g}s window"
        opened_by, calls = self.opened_by, self.calls
        if opened_by in ("failure_rate", "slow_call_rate") and calls is not None:
            if opened_by == "slow_call_rate" and self.slow_call_rate is not None:
                return f"{self.slow_call_rate:.0%} of {calls} call(s) slow {window}"
            return f"{self.failures} of {calls} call(s) failed ({self.failure_rate or 0.0:.0%}) {window}"
        if self.max_failures:
            return f"{self.failures} failure(s) {window} (threshold {self.max_failures})"
        if calls is not None:
            return f"{self.failures} of {calls} call(s) failed {window}"
        return ""

    def __str__(self) -> str:
        head = f"circuit {self.service!r} is {self.state}"
        if self.opened_by is not None:
            head += f" (opened by {self.opened_by})"
        figures = "" if self.opened_by == "operator" else self._figures()
        parts = [f"{head}: {figures}" if figures else head]
        if self.last_failure is not None:
            parts.append(f"last failure: {self.last_failure.get('reason')}")
        if self.retry_after is None:
            parts.append("held open until reset")
        else:
            parts.append(f"retry after {self.retry_after:.3f}s")
        return "; ".join(parts)


_base_args: Any = BaseException.__dict__["args"]  # the C slot behind ``args`` (CircuitOpenError defers it)
_DEFERRED = object()

_deferred_open_error: Callable[..., CircuitOpenError] = CircuitOpenError
"""``_deferred_open_error(service, _DEFERRED, fill, capture)``: a ``CircuitOpenError`` whose
fields are ``fill(service, capture)``, called the first time they are read (``capture`` is
what the circuit held at the rejection: plain references, no work). Private to backends."""


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
