"""Policies: when a circuit opens, how long it stays open, and what counts as a failure.

Both classes are frozen and validated when they are built, so a bad value fails at
start-up with an ``InvalidConfigError`` naming the field, never at the first outage.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from . import _validate
from .exceptions import InvalidConfigError, InvalidConfigTypeError

__all__ = ["MODES", "RATE_BUCKETS", "UNSET", "ReturnValuePolicy", "ServicePolicy"]

logger = logging.getLogger("tnm.circuit")


ExceptionRule: TypeAlias = "type[BaseException] | Callable[[BaseException], bool]"
"""An entry of ``on_exceptions``, ``ignore_exceptions`` or ``open_on``: an exception class, or a
predicate that takes the exception and says whether it matches."""


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""Marks ``ReturnValuePolicy.retval`` as not given (``None`` is a valid value to match)."""

MODES: Final = ("enforce", "observe")
"""``ServicePolicy.mode`` values: reject calls while open, or only watch what would be rejected."""

_TRIAL_LOOK_FLOOR_SECONDS: Final = 1.0
"""The shortest wait ``ServicePolicy.wait_before_retry`` gives while a trial runs."""

RATE_BUCKETS: Final = 10
"""The rate triggers' window is kept as this many time buckets (``window_seconds / 10`` each):
calls older than the window leave it one bucket at a time, as in Polly's sampling windows."""


@dataclass(frozen=True)
class ReturnValuePolicy:
    """Which return values count as failures.

    A value fails when any given rule matches: ``retval_none`` and it is ``None``;
    it equals ``retval``; or it is in ``retval_in``. With ``retval_accessor`` the rules
    apply to a value reached from the result by a dotted path of attributes or mapping
    keys (``"status_code"``, ``"data.code"``); if the last step is callable it is called
    with ``retval_accessor_args`` / ``retval_accessor_kwargs`` (``"meta.get_code"``).
    If the path cannot be followed, the rules apply to the result itself.

    ``predicate`` is a rule of its own (alone it is a valid policy), like tenacity's
    ``retry_if_result``: it is called with the value (the one ``retval_accessor`` reached,
    if set) and the value fails when it answers true. A non-empty string answer is also
    the failure's reason (``"HTTP 503 Service Unavailable"``); a predicate that raises
    counts as no match.
    """

    retval_none: bool = False
    retval: Any = UNSET
    retval_in: Iterable[Any] | None = None
    retval_accessor: str | None = None
    retval_accessor_args: tuple[Any, ...] = ()
    retval_accessor_kwargs: Mapping[str, Any] | None = None
    predicate: Callable[[Any], object] | None = None
    _path: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not isinstance(self.retval_none, bool):
            raise InvalidConfigTypeError("retval_none", f"must be a bool, got {self.retval_none!r}")
        if self.retval_in is not None:
            if isinstance(self.retval_in, (str, bytes)) or not isinstance(self.retval_in, Iterable):
                raise InvalidConfigTypeError(
                    "retval_in", f"must be a list or tuple of values, got {self.retval_in!r}"
                )
            object.__setattr__(self, "retval_in", tuple(self.retval_in))
        if self.predicate is not None and not callable(self.predicate):
            raise InvalidConfigTypeError("predicate", f"must be callable, got {self.predicate!r}")
        if not (
            self.retval_none
            or self.retval is not UNSET
            or self.retval_in is not None
            or self.predicate is not None
        ):
            raise InvalidConfigError(
                "retval_none/retval/retval_in/predicate",
                "a ReturnValuePolicy needs at least one rule "
                "(retval_none=True, retval=, retval_in= or predicate=)",
            )
        if self.retval_accessor is not None:
            if not isinstance(self.retval_accessor, str):
                raise InvalidConfigTypeError(
                    "retval_accessor", f"must be a dotted str, got {self.retval_accessor!r}"
                )
            path = tuple(self.retval_accessor.split("."))
            if not all(path):
                raise InvalidConfigError(
                    "retval_accessor", f"{self.retval_accessor!r} has an empty path segment"
                )
            object.__setattr__(self, "_path", path)
        if not isinstance(self.retval_accessor_args, tuple):
            object.__setattr__(self, "retval_accessor_args", tuple(self.retval_accessor_args))
        if self.retval_accessor_kwargs is not None:
            if not isinstance(self.retval_accessor_kwargs, Mapping):
                raise InvalidConfigTypeError(
                    "retval_accessor_kwargs", f"must be a mapping, got {self.retval_accessor_kwargs!r}"
                )
            object.__setattr__(self, "retval_accessor_kwargs", dict(self.retval_accessor_kwargs))

    def _access(self, result: Any) -> Any:
        value = result
        last = len(self._path) - 1
        for i, name in enumerate(self._path):
            is_key = isinstance(value, Mapping) and name in value
            value = value[name] if is_key else getattr(value, name)
            if i == last and callable(value):
                value = value(*self.retval_accessor_args, **(self.retval_accessor_kwargs or {}))
        return value

    def failure_reason(self, result: Any) -> str | None:
        """Return why ``result`` is a failure under this policy, or ``None`` if it is not.

        Never raises: a comparison or accessor that fails counts as "no match"
        (a broken rule must not take the caller's result away).
        """
        value = result
        if self._path:
            try:
                value = self._access(result)
            except Exception:
                logger.warning(
                    "retval_accessor %r could not be applied to %s; checking the result itself",
                    self.retval_accessor,
                    type(result).__name__,
                )
                value = result
        verdict: object = None
        if self.predicate is not None:
            try:
                verdict = self.predicate(value)
            except Exception:
                logger.warning(
                    "return value predicate %r raised on %s; taken as no match",
                    self.predicate,
                    type(value).__name__,
                    exc_info=True,
                )
                verdict = None
            if isinstance(verdict, str) and verdict:
                return _validate.bounded_reason(verdict)
        try:
            matched = (
                bool(verdict)
                or (self.retval_none and value is None)
                or (self.retval is not UNSET and bool(value == self.retval))
                or (
                    self.retval_in is not None
                    and any(value is item or bool(value == item) for item in self.retval_in)
                )
            )
        except Exception:
            return None
        if not matched:
            return None
        where = f"{self.retval_accessor}=" if self._path else ""
        return _validate.bounded_reason(f"return value {where}{value!r} matched the failure policy")


@dataclass(frozen=True)
class ServicePolicy:
    """When a service's circuit opens and how it recovers.

    Triggers (whichever fires first opens the circuit):

    * count: ``max_failures`` failures inside a sliding window of ``window_seconds``;
      a success while closed resets that count. ``max_failures=None`` turns it off.
    * failure rate: with ``failure_rate_threshold`` (in (0, 1]), once at least
      ``minimum_calls`` calls completed in the window, a share of failures at or
      above the threshold. Successes lower the rate; they do not reset it.
    * slow-call rate: a call that takes longer than ``slow_call_seconds`` is slow,
      whatever its outcome; with ``slow_call_rate_threshold``, a share of slow calls
      at or above it (with ``minimum_calls``) opens the circuit. A slow trial call in
      half-open counts as a failed trial. Time is only measured when
      ``slow_call_seconds`` is set.

    ``mode="observe"`` runs circuits as usual (they open and close, events and metrics
    flow) but rejects no call: a call that would have been rejected runs, and
    listeners see a ``would_reject`` event.

    Recovery: it stays open ``open_seconds`` (default: ``window_seconds``), then lets
    ``half_open_max_calls`` trial calls run at once. ``success_threshold`` trial
    successes close it; a trial failure re-opens it, for ``open_seconds`` times
    ``backoff_multiplier`` per consecutive re-opening, capped at ``max_open_seconds``
    (default ten times ``open_seconds``). A trial that neither finishes nor is
    cancelled loses its permit after ``trial_timeout_seconds``.

    What counts: with ``on_exceptions`` only those exceptions are failures;
    ``ignore_exceptions`` are never failures (neither do they count as successes). Each
    entry of either is an exception class or a predicate taking the exception
    (``lambda e: getattr(e, "status", 0) >= 500``), like tenacity's ``retry_if_exception``.

    ``open_on`` (classes or predicates, like ``on_exceptions``): one failure that is an
    instance of a listed class, or that a listed predicate says yes to, opens a closed or
    half-open circuit at once (fleet-wide on Redis), ``opened_by="open_on"`` (a quota
    exhausted, an account suspended: waiting for more failures only wastes calls).
    ``ignore_exceptions`` still wins: an ignored exception never opens anything.
    ``on_retval_policy`` makes chosen return values failures.

    Fleets (Redis backend): a trigger decides on every process's calls, and
    ``min_failing_processes=k`` (a quorum) also asks that at least ``k`` distinct processes
    failed inside the window, or that ``k`` processes are isolated at once (``k >= 2``). A
    process whose own calls meet the trigger while the fleet's circuit stays closed isolates
    itself: its calls are rejected, ``opened_by="process"``. One process (the local backend,
    or while Redis is unreachable) decides alone, as with ``k=1``.
    """

    window_seconds: float = 60.0
    max_failures: int | None = 5
    ignore_exceptions: Iterable[ExceptionRule] = ()
    on_exceptions: Iterable[ExceptionRule] = ()
    on_retval_policy: ReturnValuePolicy | None = None
    open_seconds: float | None = None
    half_open_max_calls: int = 1
    success_threshold: int = 1
    backoff_multiplier: float = 1.0
    max_open_seconds: float | None = None
    trial_timeout_seconds: float = 30.0
    failure_rate_threshold: float | None = None
    minimum_calls: int = 10
    slow_call_seconds: float | None = None
    slow_call_rate_threshold: float | None = None
    mode: str = "enforce"
    open_on: Iterable[ExceptionRule] = ()
    min_failing_processes: int = 1

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        window = _validate.duration("window_seconds", self.window_seconds, allow_zero=False)
        setattr_(self, "window_seconds", window)
        if self.max_failures is not None:
            _validate.positive_int("max_failures", self.max_failures)
        if self.failure_rate_threshold is not None:
            setattr_(
                self,
                "failure_rate_threshold",
                _validate.rate("failure_rate_threshold", self.failure_rate_threshold),
            )
        _validate.positive_int("minimum_calls", self.minimum_calls)
        _validate.positive_int("min_failing_processes", self.min_failing_processes)
        if self.slow_call_seconds is not None:
            setattr_(
                self,
                "slow_call_seconds",
                _validate.duration("slow_call_seconds", self.slow_call_seconds, allow_zero=False),
            )
        if self.slow_call_rate_threshold is not None:
            if self.slow_call_seconds is None:
                raise InvalidConfigError(
                    "slow_call_rate_threshold", "needs slow_call_seconds: what counts as a slow call"
                )
            setattr_(
                self,
                "slow_call_rate_threshold",
                _validate.rate("slow_call_rate_threshold", self.slow_call_rate_threshold),
            )
        if self.mode not in MODES:
            raise InvalidConfigError("mode", f"must be one of {MODES}, got {self.mode!r}")
        if (
            self.max_failures is None
            and self.failure_rate_threshold is None
            and (self.slow_call_rate_threshold is None)
        ):
            raise InvalidConfigError(
                "max_failures",
                "None turns the count trigger off: set failure_rate_threshold or "
                "slow_call_rate_threshold, or the circuit could never open",
            )
        setattr_(
            self,
            "ignore_exceptions",
            _validate.exception_rules("ignore_exceptions", self.ignore_exceptions),
        )
        setattr_(self, "on_exceptions", _validate.exception_rules("on_exceptions", self.on_exceptions))
        setattr_(self, "open_on", _validate.exception_rules("open_on", self.open_on))
        if self.on_retval_policy is not None and not isinstance(self.on_retval_policy, ReturnValuePolicy):
            raise InvalidConfigTypeError(
                "on_retval_policy", f"must be a ReturnValuePolicy, got {self.on_retval_policy!r}"
            )
        open_seconds = (
            window
            if self.open_seconds is None
            else _validate.duration("open_seconds", self.open_seconds, allow_zero=True)
        )
        setattr_(self, "open_seconds", open_seconds)
        _validate.positive_int("half_open_max_calls", self.half_open_max_calls)
        _validate.positive_int("success_threshold", self.success_threshold)
        multiplier = _validate.duration("backoff_multiplier", self.backoff_multiplier, allow_zero=False)
        if multiplier < 1.0:
            raise InvalidConfigError("backoff_multiplier", f"must be >= 1.0, got {multiplier!r}")
        setattr_(self, "backoff_multiplier", multiplier)
        cap = (
            open_seconds * 10
            if self.max_open_seconds is None
            else _validate.duration("max_open_seconds", self.max_open_seconds, allow_zero=True)
        )
        if cap < open_seconds:
            raise InvalidConfigError(
                "max_open_seconds", f"must be >= open_seconds ({open_seconds:g}), got {cap:g}"
            )
        setattr_(self, "max_open_seconds", cap)
        setattr_(
            self,
            "trial_timeout_seconds",
            _validate.duration("trial_timeout_seconds", self.trial_timeout_seconds, allow_zero=False),
        )

    @property
    def counts_calls(self) -> bool:
        """True if a rate trigger is set: every call is counted in time buckets."""
        return self.failure_rate_threshold is not None or self.slow_call_rate_threshold is not None

    @property
    def bucket_ms(self) -> int:
        """Width of one rate bucket, whole milliseconds (the same on every backend)."""
        return max(1, math.ceil(self.window_seconds * 1000 / RATE_BUCKETS))

    def wait_before_retry(self, retry_after: float | None, state: str) -> float | None:
        """How long a refused caller that retries by itself (a task, a worker loop) should wait
        before it tries again, given the refusal's ``retry_after`` and the circuit's ``state``.

        That is ``retry_after``, except while half-open with every trial permit taken: then
        ``retry_after`` is the running trial's deadline (``trial_timeout_seconds``), but the
        trial usually ends long before it, so the wait is at most ``open_seconds``, and never
        under one second (a caller whose waits count as retries looks again at that pace while
        a slow trial runs). ``None`` (an operator holds the circuit open: no deadline) stays
        ``None``.
        """
        if retry_after is not None and state == "half_open":
            open_seconds: float = self.open_seconds  # type: ignore[assignment]  # resolved in __post_init__
            return min(retry_after, max(open_seconds, _TRIAL_LOOK_FLOOR_SECONDS))
        return retry_after

    def open_duration(self, reopenings: int) -> float:
        """How long the circuit stays open after ``reopenings`` consecutive failed trials."""
        base: float = self.open_seconds  # type: ignore[assignment]  # resolved in __post_init__
        cap: float = self.max_open_seconds  # type: ignore[assignment]
        if reopenings <= 0 or self.backoff_multiplier == 1.0:
            return base
        # Bound the exponent: past the cap the value no longer matters.
        return min(base * self.backoff_multiplier ** min(reopenings, 64), cap)
