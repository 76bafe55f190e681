"""Running one protected call: admit, run, classify the outcome, record it.

``sync_wrapper`` and ``async_wrapper`` build what ``protect`` returns, ``call_sync`` runs
``execute``. The healthy path (circuit closed, nothing to reset, no listeners) reads
two attributes and makes no other call. Recording never raises into the caller: whatever happens inside the
breaker, the caller gets the protected call's own result or exception.

Which wrapper a callable gets is decided once, by ``is_coroutine_callable``. A callable
that is not recognisably async may still return an awaitable (a function decorated by
another library, say): the sync paths check the result, and an awaitable is handed back
wrapped so that its outcome is recorded when it completes, not when it was created.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from . import _validate
from .backends.base import CircuitHandle
from .events import ListenerList
from .exceptions import InvalidConfigTypeError, ReturnValuePolicyError
from .policies import ExceptionMatcher, ExceptionRule, ReturnValuePolicy, ServicePolicy
from .state import CLOSED

logger = logging.getLogger("tnm.circuit")

R = TypeVar("R")


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
        "observe",
        "on",
        "retval_policy",
        "slow_after",
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
        self.counts_all = not self.ignore and not self.on
        """Every Exception is a failure: no class check needed."""
        self.retval_policy = on_retval_policy or policy.on_retval_policy
        if failure_reason is not None and not isinstance(failure_reason, str):
            raise InvalidConfigTypeError("failure_reason", f"must be a str, got {failure_reason!r}")
        self.failure_reason = None if failure_reason is None else _validate.bounded_reason(failure_reason)
        self.observe = policy.mode == "observe"
        """Observe mode: a call the circuit would reject runs anyway (and is not recorded)."""
        self.slow_after = policy.slow_call_seconds
        """Calls are timed only when this is set (a slow-call policy)."""

    def is_failure(self, exc: BaseException) -> bool:
        ignored, counted = self._ignored, self._counted
        return not ((ignored is not None and ignored(exc)) or (counted is not None and not counted(exc)))

    @staticmethod
    def reason_for(exc: BaseException) -> str:
        return exception_reason(exc)


exception_reason = _validate.exception_reason


def _log_breaker_error(circuit: CircuitHandle) -> None:
    logger.exception("tnm-circuit could not record an outcome for %r", circuit.service)


def record_exception(
    circuit: CircuitHandle, rules: CallRules, token: int, exc: Exception, slow: bool = False
) -> None:
    try:
        if rules.counts_all or rules.is_failure(exc):
            if slow:
                circuit.on_failure(token, rules.failure_reason or rules.reason_for(exc), True)
            else:
                circuit.on_failure(token, rules.failure_reason or rules.reason_for(exc))
        else:
            circuit.on_ignored(token)
    except Exception:
        _log_breaker_error(circuit)


async def arecord_exception(
    circuit: CircuitHandle, rules: CallRules, token: int, exc: Exception, slow: bool = False
) -> None:
    try:
        if rules.counts_all or rules.is_failure(exc):
            await circuit.aon_failure(token, rules.failure_reason or rules.reason_for(exc), slow)
        else:
            await circuit.aon_ignored(token)
    except Exception:
        _log_breaker_error(circuit)


def release(circuit: CircuitHandle, token: int) -> None:
    try:
        circuit.on_release(token)
    except Exception:
        _log_breaker_error(circuit)


def retval_error(circuit: CircuitHandle, rules: CallRules, result: Any) -> ReturnValuePolicyError | None:
    """The error to raise if ``result`` is a failure under the rules' return-value policy."""
    policy = rules.retval_policy
    reason = None if policy is None else policy.failure_reason(result)
    if policy is None or reason is None:
        return None
    return ReturnValuePolicyError(circuit.service, result, policy, rules.failure_reason or reason)


def check_retval(
    circuit: CircuitHandle, rules: CallRules, token: int, result: Any, slow: bool = False
) -> None:
    """Raise ``ReturnValuePolicyError`` (after recording the failure) if ``result`` is one."""
    error = retval_error(circuit, rules, result)
    if error is not None:
        try:
            if slow:
                circuit.on_failure(token, error.reason, True)
            else:
                circuit.on_failure(token, error.reason)
        except Exception:
            _log_breaker_error(circuit)
        raise error


async def acheck_retval(
    circuit: CircuitHandle, rules: CallRules, token: int, result: Any, slow: bool = False
) -> None:
    """``check_retval`` on the async path: a shared store records without blocking the loop."""
    error = retval_error(circuit, rules, result)
    if error is not None:
        try:
            await circuit.aon_failure(token, error.reason, slow)
        except Exception:
            _log_breaker_error(circuit)
        raise error


def record_success(circuit: CircuitHandle, token: int) -> None:
    try:
        circuit.on_success(token)
    except Exception:
        _log_breaker_error(circuit)


async def arecord_success(circuit: CircuitHandle, token: int) -> None:
    try:
        await circuit.aon_success(token)
    except Exception:
        _log_breaker_error(circuit)


def is_coroutine_callable(func: object) -> bool:
    """True if calling ``func`` returns a coroutine: an ``async def``, a ``functools.partial``
    of one, or an object whose ``__call__`` is one (never a class: building it is sync)."""
    if inspect.isclass(func):
        return False
    if inspect.iscoroutinefunction(func):
        return True
    while isinstance(func, functools.partial):
        func = func.func
    dunder_call = getattr(type(func), "__call__", None)  # noqa: B004 - on the type, as a call looks
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(dunder_call)


async def settle(
    awaitable: Awaitable[Any],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    token: int,
) -> Any:
    """Await what a sync-looking callable returned, then record its outcome (the sync paths'
    way out when the result turns out to be awaitable)."""
    io_free = circuit.io_free
    try:
        result = await awaitable
    except Exception as exc:
        if io_free:
            record_exception(circuit, rules, token, exc)
        else:
            await arecord_exception(circuit, rules, token, exc)
        raise
    except BaseException:
        if token:
            release(circuit, token)
        raise
    if rules.retval_policy is not None:
        if io_free:
            check_retval(circuit, rules, token, result)
        else:
            await acheck_retval(circuit, rules, token, result)
    if token or circuit.dirty or listeners.callbacks:
        if io_free:
            record_success(circuit, token)
        else:
            await arecord_success(circuit, token)
    elif circuit.tally is not None and circuit.state is CLOSED:
        circuit.tally()  # a rate policy counts every success
    return result


def _is_awaitable(result: object) -> bool:
    # ``hasattr`` first: a plain result costs one failed attribute lookup, not three isinstance checks.
    return hasattr(result, "__await__") and inspect.isawaitable(result)


def call_sync(
    func: Callable[..., R],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    """One call through ``circuit`` for ``execute``: the path of ``sync_wrapper`` without
    building a closure per call (which would cost more than the call path itself)."""
    if rules.slow_after is not None:
        return timed_call_sync(func, circuit, rules, listeners, fallback, args, kwargs)
    token = 0
    if circuit.state is not CLOSED:
        token = circuit.acquire()
        if token < 0:
            if rules.observe:
                if listeners.callbacks:
                    circuit.on_rejected(False, True)
                return func(*args, **kwargs)
            if listeners.callbacks:
                circuit.on_rejected(fallback is not None)
            if fallback is None:
                raise circuit.open_error()
            return fallback(*args, **kwargs)  # type: ignore[no-any-return]
    try:
        result = func(*args, **kwargs)
    except Exception as exc:
        record_exception(circuit, rules, token, exc)
        raise
    except BaseException:
        if token:
            release(circuit, token)
        raise
    if _is_awaitable(result):
        return settle(result, circuit, rules, listeners, token)  # type: ignore[arg-type, return-value]
    if rules.retval_policy is not None:
        check_retval(circuit, rules, token, result)
    if token or circuit.dirty or listeners.success_callbacks:
        record_success(circuit, token)
    else:  # closed (or disabled) with nothing to reset: count it, no event
        if listeners.callbacks:
            circuit.counts.success.increment()
        if circuit.tally is not None and circuit.state is CLOSED:
            circuit.tally()
    return result


async def call_async(
    func: Callable[..., Awaitable[R]],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    """One call of a coroutine function through ``circuit``, no fallback: the async twin of
    ``call_sync`` for ``Caller.acall`` (no closure built per call)."""
    if rules.slow_after is not None:
        return await timed_call_async(func, circuit, rules, listeners, None, args, kwargs)
    token = 0
    if circuit.state is not CLOSED:
        token = circuit.acquire() if circuit.io_free else await circuit.aacquire()
        if token < 0 and _reject(circuit, rules, listeners, None):
            return await func(*args, **kwargs)  # observe mode
    return await settle(func(*args, **kwargs), circuit, rules, listeners, token)  # type: ignore[no-any-return]


# The two wrappers below hold the whole call path inline (no helper frame on the
# healthy path, one less frame for an exception to cross): ``protect`` returns them.


def failure_recorder(
    circuit: CircuitHandle, fixed_reason: str | None
) -> Callable[[int, BaseException], None]:
    """What the call path calls with a failure's token and exception (every one counts)."""
    if fixed_reason is None:
        return circuit.on_exception
    on_failure = circuit.on_failure

    def with_fixed_reason(token: int, _exc: BaseException) -> None:
        on_failure(token, fixed_reason)

    return with_fixed_reason


def sync_wrapper(
    func: Callable[..., R],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., R]:
    """Wrap a sync ``func`` so that each call goes through ``circuit``."""
    if rules.slow_after is not None:

        def timed(*args: Any, **kwargs: Any) -> R:
            return timed_call_sync(func, circuit, rules, listeners, fallback, args, kwargs)

        return timed
    closed = CLOSED
    has_retval_policy = rules.retval_policy is not None
    counts_all = rules.counts_all
    fail = failure_recorder(circuit, rules.failure_reason)
    observe = rules.observe
    tally = circuit.tally
    count_success = circuit.counts.success.increment
    count_rejected = (circuit.counts.rejected if fallback is None else circuit.counts.fallback).increment
    window, roll, monotonic = circuit.window, circuit.roll_window, circuit.monotonic

    def run(*args: Any, **kwargs: Any) -> R:
        token = 0
        if circuit.state is not closed:
            token = circuit.acquire()
            if token < 0:
                if observe:
                    if listeners.callbacks:
                        circuit.on_rejected(False, True)
                    return func(*args, **kwargs)
                if listeners.callbacks:
                    if listeners.call_callbacks:
                        circuit.on_rejected(fallback is not None)
                    else:
                        count_rejected()  # metrics alone: a counter, no event
                if fallback is None:
                    raise circuit.open_error()
                return fallback(*args, **kwargs)  # type: ignore[no-any-return]
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            if counts_all:  # record_exception, inlined for the common case
                try:
                    fail(token, exc)  # the reason is worked out only if read
                except Exception:
                    _log_breaker_error(circuit)
            else:
                record_exception(circuit, rules, token, exc)
            raise
        except BaseException:
            if token:
                release(circuit, token)
            raise
        if hasattr(result, "__await__") and inspect.isawaitable(result):
            return settle(result, circuit, rules, listeners, token)  # type: ignore[return-value]
        if has_retval_policy:
            check_retval(circuit, rules, token, result)
        if token or circuit.dirty or listeners.success_callbacks:
            record_success(circuit, token)
        else:  # closed (or disabled) with nothing to reset: count it, no event
            if listeners.callbacks:
                count_success()
            if window is not None:  # tally(), inlined: a rate policy on the local backend
                # (closed, or disabled: a disabled window shows nothing and reset clears it)
                if monotonic() >= window.bucket_end:
                    roll()
                window.ok()
            elif tally is not None and circuit.state is closed:
                tally()
        return result

    return run


def async_wrapper(
    func: Callable[..., Awaitable[R]],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., Awaitable[R]]:
    """Wrap an async ``func``; storage I/O on this path uses the backend's async methods."""
    if rules.slow_after is not None:

        async def timed(*args: Any, **kwargs: Any) -> R:
            return await timed_call_async(func, circuit, rules, listeners, fallback, args, kwargs)

        return timed
    closed = CLOSED
    has_retval_policy = rules.retval_policy is not None
    io_free = circuit.io_free
    counts_all = rules.counts_all
    fail = failure_recorder(circuit, rules.failure_reason)
    observe = rules.observe
    tally = circuit.tally
    count_success = circuit.counts.success.increment
    count_rejected = (circuit.counts.rejected if fallback is None else circuit.counts.fallback).increment
    window, roll, monotonic = circuit.window, circuit.roll_window, circuit.monotonic

    async def run(*args: Any, **kwargs: Any) -> R:
        token = 0
        if circuit.state is not closed:
            token = circuit.acquire() if io_free else await circuit.aacquire()
            if token < 0:
                if observe:
                    if listeners.callbacks:
                        circuit.on_rejected(False, True)
                    return await func(*args, **kwargs)
                if listeners.callbacks:
                    if listeners.call_callbacks:
                        circuit.on_rejected(fallback is not None)
                    else:
                        count_rejected()
                if fallback is None:
                    raise circuit.open_error()
                served = fallback(*args, **kwargs)
                return await served if inspect.isawaitable(served) else served  # type: ignore[no-any-return]
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            if io_free and counts_all:  # record_exception, inlined for the common case
                try:
                    fail(token, exc)
                except Exception:
                    _log_breaker_error(circuit)
            elif io_free:
                record_exception(circuit, rules, token, exc)
            else:
                await arecord_exception(circuit, rules, token, exc)
            raise
        except BaseException:
            # Cancelled or interrupted: no outcome, but the trial permit goes back now.
            if token:
                release(circuit, token)
            raise
        if has_retval_policy:
            if io_free:
                check_retval(circuit, rules, token, result)
            else:
                await acheck_retval(circuit, rules, token, result)
        if token or circuit.dirty or listeners.success_callbacks:
            if io_free:
                record_success(circuit, token)
            else:
                await arecord_success(circuit, token)
        else:
            if listeners.callbacks:
                count_success()
            if window is not None:
                if monotonic() >= window.bucket_end:
                    roll()
                window.ok()
            elif tally is not None and circuit.state is closed:
                tally()
        return result

    return run


# Slow-call policies: the same paths with the call timed (only these pay for the clock).


def _reject(
    circuit: CircuitHandle, rules: CallRules, listeners: ListenerList, fallback: Callable[..., Any] | None
) -> bool:
    """Tell listeners about a rejected call; True if it runs anyway (observe mode)."""
    if listeners.callbacks:
        circuit.on_rejected(fallback is not None and not rules.observe, rules.observe)
    if rules.observe:
        return True
    if fallback is None:
        raise circuit.open_error()
    return False


def timed_call_sync(
    func: Callable[..., R],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    """One call through ``circuit`` with its duration measured against ``slow_call_seconds``."""
    token = 0
    if circuit.state is not CLOSED:
        token = circuit.acquire()
        if token < 0:
            if _reject(circuit, rules, listeners, fallback):
                return func(*args, **kwargs)
            return fallback(*args, **kwargs)  # type: ignore[misc,no-any-return]
    monotonic = circuit.monotonic
    limit: float = rules.slow_after  # type: ignore[assignment]
    start = monotonic()
    try:
        result = func(*args, **kwargs)
    except Exception as exc:
        record_exception(circuit, rules, token, exc, monotonic() - start > limit)
        raise
    except BaseException:
        if token:
            release(circuit, token)
        raise
    slow = monotonic() - start > limit
    if rules.retval_policy is not None:
        check_retval(circuit, rules, token, result, slow)
    if slow:
        try:
            circuit.on_slow_success(token)
        except Exception:
            _log_breaker_error(circuit)
    elif token or circuit.dirty or listeners.callbacks:
        record_success(circuit, token)
    elif circuit.tally is not None:
        circuit.tally()
    return result


async def timed_call_async(
    func: Callable[..., Awaitable[R]],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    """``timed_call_sync`` for coroutine functions; a shared store's I/O never blocks the loop."""
    token = 0
    if circuit.state is not CLOSED:
        token = circuit.acquire() if circuit.io_free else await circuit.aacquire()
        if token < 0:
            if _reject(circuit, rules, listeners, fallback):
                return await func(*args, **kwargs)
            served = fallback(*args, **kwargs)  # type: ignore[misc]
            return await served if inspect.isawaitable(served) else served  # type: ignore[no-any-return]
    monotonic = circuit.monotonic
    limit: float = rules.slow_after  # type: ignore[assignment]
    start = monotonic()
    try:
        result = await func(*args, **kwargs)
    except Exception as exc:
        await arecord_exception(circuit, rules, token, exc, monotonic() - start > limit)
        raise
    except BaseException:
        if token:
            release(circuit, token)
        raise
    slow = monotonic() - start > limit
    if rules.retval_policy is not None:
        await acheck_retval(circuit, rules, token, result, slow)
    if slow:
        try:
            await circuit.aon_slow_success(token)
        except Exception:
            _log_breaker_error(circuit)
    elif token or circuit.dirty or listeners.callbacks:
        await arecord_success(circuit, token)
    elif circuit.tally is not None:
        circuit.tally()
    return result


def protected(
    func: Callable[..., Any],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., Any]:
    """The wrapper ``protect`` returns: sync or ``async def`` like ``func``, with its metadata."""
    if is_coroutine_callable(func):
        return functools.wraps(func)(async_wrapper(func, circuit, rules, listeners, fallback))
    return functools.wraps(func)(sync_wrapper(func, circuit, rules, listeners, fallback))
