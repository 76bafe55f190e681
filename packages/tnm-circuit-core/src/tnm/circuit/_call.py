"""Running one protected call: admit, run, classify the outcome, record it.

``call_sync`` and ``call_async`` serve both ``protect`` and ``execute``. The healthy
path (circuit closed, nothing to reset, no listeners) reads two attributes and makes
no other call. Recording never raises into the caller: whatever happens inside the
breaker, the caller gets the protected call's own result or exception.
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

    __slots__ = ("failure_reason", "ignore", "on", "retval_policy")

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
        self.retval_policy = on_retval_policy or policy.on_retval_policy
        if failure_reason is not None and not isinstance(failure_reason, str):
            raise InvalidConfigTypeError("failure_reason", f"must be a str, got {failure_reason!r}")
        self.failure_reason = failure_reason

    def is_failure(self, exc: BaseException) -> bool:
        if self.ignore and isinstance(exc, self.ignore):
            return False
        return not (self.on and not isinstance(exc, self.on))

    def reason_for(self, exc: BaseException) -> str:
        if self.failure_reason is not None:
            return _validate.bounded_reason(self.failure_reason)
        return _validate.bounded_reason(f"{type(exc).__name__}: {exc}")


def _log_breaker_error(circuit: CircuitHandle) -> None:
    logger.exception("tnm-circuit could not record an outcome for %r", circuit.service)


def record_exception(circuit: CircuitHandle, rules: CallRules, token: int, exc: Exception) -> None:
    try:
        if rules.is_failure(exc):
            circuit.on_failure(token, rules.reason_for(exc))
        else:
            circuit.on_ignored(token)
    except Exception:
        _log_breaker_error(circuit)


async def arecord_exception(circuit: CircuitHandle, rules: CallRules, token: int, exc: Exception) -> None:
    try:
        if rules.is_failure(exc):
            await circuit.aon_failure(token, rules.reason_for(exc))
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
    if policy is None:
        return None
    reason = policy.failure_reason(result)
    if reason is None:
        return None
    if rules.failure_reason is not None:
        reason = _validate.bounded_reason(rules.failure_reason)
    return ReturnValuePolicyError(circuit.service, result, policy, reason)


def reject(
    circuit: CircuitHandle,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """The circuit refused the call: serve it from ``fallback`` or raise ``CircuitOpenError``."""
    circuit.on_rejected(fallback is not None)
    if fallback is None:
        raise circuit.open_error()
    return fallback(*args, **kwargs)


async def areject(
    circuit: CircuitHandle,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    result = reject(circuit, fallback, args, kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def call_sync(
    func: Callable[..., R],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    """Run ``func(*args, **kwargs)`` through ``circuit``."""
    token = 0
    if circuit.state is not CLOSED:
        token = circuit.acquire()
        if token < 0:
            return reject(circuit, fallback, args, kwargs)  # type: ignore[no-any-return]
    try:
        result = func(*args, **kwargs)
    except Exception as exc:
        record_exception(circuit, rules, token, exc)
        raise
    except BaseException:
        if token:
            release(circuit, token)
        raise
    if rules.retval_policy is not None:
        error = retval_error(circuit, rules, result)
        if error is not None:
            try:
                circuit.on_failure(token, error.reason)
            except Exception:
                _log_breaker_error(circuit)
            raise error
    if token or circuit.dirty or listeners:
        try:
            circuit.on_success(token)
        except Exception:
            _log_breaker_error(circuit)
    return result


async def call_async(
    func: Callable[..., Awaitable[R]],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    """Await ``func(*args, **kwargs)`` through ``circuit``; storage I/O uses the async path."""
    token = 0
    if circuit.state is not CLOSED:
        token = await circuit.aacquire()
        if token < 0:
            return await areject(circuit, fallback, args, kwargs)  # type: ignore[no-any-return]
    try:
        result = await func(*args, **kwargs)
    except Exception as exc:
        await arecord_exception(circuit, rules, token, exc)
        raise
    except BaseException:
        # Cancelled or interrupted: no outcome, but the trial permit goes back now.
        if token:
            release(circuit, token)
        raise
    if rules.retval_policy is not None:
        error = retval_error(circuit, rules, result)
        if error is not None:
            try:
                await circuit.aon_failure(token, error.reason)
            except Exception:
                _log_breaker_error(circuit)
            raise error
    if token or circuit.dirty or listeners:
        try:
            await circuit.aon_success(token)
        except Exception:
            _log_breaker_error(circuit)
    return result


def protected(
    func: Callable[..., Any],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., Any]:
    """The wrapper ``protect`` returns: sync or ``async def`` like ``func``, with its metadata."""
    if inspect.iscoroutinefunction(func):

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await call_async(func, circuit, rules, listeners, fallback, args, kwargs)

        return functools.wraps(func)(run_async)

    def run(*args: Any, **kwargs: Any) -> Any:
        return call_sync(func, circuit, rules, listeners, fallback, args, kwargs)

    return functools.wraps(func)(run)
