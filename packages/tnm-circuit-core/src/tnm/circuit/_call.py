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
from .policies import ReturnValuePolicy, ServicePolicy
from .state import CLOSED

logger = logging.getLogger("tnm.circuit")

R = TypeVar("R")


class CallRules:
    """What counts as a failure for one decorated function or one ``execute`` call.

    Each field is the per-call override if given, else the service policy's value
    (the service policy being the default policy when the service has none).
    """

    __slots__ = ("counts_all", "failure_reason", "ignore", "on", "retval_policy")

    def __init__(
        self,
        policy: ServicePolicy,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[type[BaseException]] | None = None,
        on_exceptions: Iterable[type[BaseException]] | None = None,
        on_retval_policy: ReturnValuePolicy | None = None,
    ) -> None:
        self.ignore: tuple[type[BaseException], ...] = (
            _validate.exception_classes("ignore_exceptions", ignore_exceptions)
            if ignore_exceptions is not None
            else tuple(policy.ignore_exceptions)
        )
        self.on: tuple[type[BaseException], ...] = (
            _validate.exception_classes("on_exceptions", on_exceptions)
            if on_exceptions is not None
            else tuple(policy.on_exceptions)
        )
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

    def is_failure(self, exc: BaseException) -> bool:
        ignore, on = self.ignore, self.on
        return not ((ignore and isinstance(exc, ignore)) or (on and not isinstance(exc, on)))

    @staticmethod
    def reason_for(exc: BaseException) -> str:
        return exception_reason(exc)


def exception_reason(exc: BaseException) -> str:
    """``"Type: message"``, or ``"Type"`` alone for an exception without a message; bounded."""
    message = str(exc)
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return reason if len(reason) <= _validate.MAX_REASON_LENGTH else _validate.bounded_reason(reason)


def _log_breaker_error(circuit: CircuitHandle) -> None:
    logger.exception("tnm-circuit could not record an outcome for %r", circuit.service)


def record_exception(circuit: CircuitHandle, rules: CallRules, token: int, exc: Exception) -> None:
    try:
        if rules.counts_all or rules.is_failure(exc):
            circuit.on_failure(token, rules.failure_reason or rules.reason_for(exc))
        else:
            circuit.on_ignored(token)
    except Exception:
        _log_breaker_error(circuit)


async def arecord_exception(circuit: CircuitHandle, rules: CallRules, token: int, exc: Exception) -> None:
    try:
        if rules.counts_all or rules.is_failure(exc):
            await circuit.aon_failure(token, rules.failure_reason or rules.reason_for(exc))
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


def check_retval(circuit: CircuitHandle, rules: CallRules, token: int, result: Any) -> None:
    """Raise ``ReturnValuePolicyError`` (after recording the failure) if ``result`` is one."""
    error = retval_error(circuit, rules, result)
    if error is not None:
        try:
            circuit.on_failure(token, error.reason)
        except Exception:
            _log_breaker_error(circuit)
        raise error


async def acheck_retval(circuit: CircuitHandle, rules: CallRules, token: int, result: Any) -> None:
    """``check_retval`` on the async path: a shared store records without blocking the loop."""
    error = retval_error(circuit, rules, result)
    if error is not None:
        try:
            await circuit.aon_failure(token, error.reason)
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
    token = 0
    if circuit.state is not CLOSED:
        token = circuit.acquire()
        if token < 0:
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
    if token or circuit.dirty or listeners.callbacks:
        record_success(circuit, token)
    return result


# The two wrappers below hold the whole call path inline (no helper frame on the
# healthy path, one less frame for an exception to cross): ``protect`` returns them.


def sync_wrapper(
    func: Callable[..., R],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., R]:
    """Wrap a sync ``func`` so that each call goes through ``circuit``."""
    closed = CLOSED
    has_retval_policy = rules.retval_policy is not None
    counts_all = rules.counts_all
    fixed_reason = rules.failure_reason
    on_failure = circuit.on_failure
    max_reason = _validate.MAX_REASON_LENGTH

    def run(*args: Any, **kwargs: Any) -> R:
        token = 0
        if circuit.state is not closed:
            token = circuit.acquire()
            if token < 0:
                if listeners.callbacks:
                    circuit.on_rejected(fallback is not None)
                if fallback is None:
                    raise circuit.open_error()
                return fallback(*args, **kwargs)  # type: ignore[no-any-return]
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            if counts_all:  # record_exception, inlined for the common case
                try:
                    if fixed_reason:
                        reason = fixed_reason
                    else:
                        message = str(exc)
                        reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
                        if len(reason) > max_reason:
                            reason = _validate.bounded_reason(reason)
                    on_failure(token, reason)
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
        if token or circuit.dirty or listeners.callbacks:
            record_success(circuit, token)
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
    closed = CLOSED
    has_retval_policy = rules.retval_policy is not None
    io_free = circuit.io_free
    counts_all = rules.counts_all
    fixed_reason = rules.failure_reason
    on_failure = circuit.on_failure
    max_reason = _validate.MAX_REASON_LENGTH

    async def run(*args: Any, **kwargs: Any) -> R:
        token = 0
        if circuit.state is not closed:
            token = circuit.acquire() if io_free else await circuit.aacquire()
            if token < 0:
                if listeners.callbacks:
                    circuit.on_rejected(fallback is not None)
                if fallback is None:
                    raise circuit.open_error()
                served = fallback(*args, **kwargs)
                return await served if inspect.isawaitable(served) else served  # type: ignore[no-any-return]
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            if io_free and counts_all:  # record_exception, inlined for the common case
                try:
                    if fixed_reason:
                        reason = fixed_reason
                    else:
                        message = str(exc)
                        reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
                        if len(reason) > max_reason:
                            reason = _validate.bounded_reason(reason)
                    on_failure(token, reason)
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
        if token or circuit.dirty or listeners.callbacks:
            if io_free:
                record_success(circuit, token)
            else:
                await arecord_success(circuit, token)
        return result

    return run


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
