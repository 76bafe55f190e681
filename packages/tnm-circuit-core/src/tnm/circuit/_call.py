"""Running one protected call: admit, run, classify the outcome, record it.

``sync_wrapper`` and ``async_wrapper`` build what ``protect`` returns (a closed circuit's
call inlined); ``call_sync`` and ``call_async`` are the one generic body behind
``execute``, ``execute_async`` and every other call of a ``protect`` wrapper; ``admit`` /
``finish`` (with their async twins) are the halves ``guard`` and the generator wrappers
use. The healthy path (circuit closed, nothing to reset, no listeners) reads a few
attributes and calls nothing but the protected function (and, under a rate policy, the
clock). Recording never raises into the caller: whatever happens inside the breaker, the
caller gets the protected call's own result or exception.

Which wrapper a callable gets is decided once, by ``is_coroutine_callable``. A callable
that is not recognisably async may still return an awaitable (a function decorated by
another library, say): the sync paths check the result, and an awaitable is handed back
wrapped so that its outcome is recorded when it completes, not when it was created.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from ._rules import FAILURE, TRIP, CallRules
from .backends.base import CircuitHandle, log_record_error
from .events import ListenerList
from .exceptions import ReturnValuePolicyError
from .state import CLOSED, DISABLED, CircuitState

R = TypeVar("R")

if sys.version_info >= (3, 11):
    from sys import exception as _handled
else:  # pragma: no cover - CPython 3.10

    def _handled() -> BaseException | None:
        return sys.exc_info()[1]


current_exception = cast("Callable[[], Exception]", _handled)
"""The exception an ``except Exception:`` block is handling. The wrappers catch that way and
read it here: ``except Exception as exc:`` costs a failure a second re-raise on its way out
(the clean-up of ``exc``), about 20 ns on CPython 3.11."""


def record_exception(
    circuit: CircuitHandle, rules: CallRules, token: int, exc: Exception, slow: bool = False
) -> None:
    try:
        verdict = FAILURE if rules.counts_all else rules.judge(exc)
        if verdict:
            fixed_reason = rules.failure_reason
            if verdict == FAILURE and not slow and fixed_reason is None:
                circuit.on_exception(token, exc)  # the reason formatted only if read
                return
            reason = fixed_reason or rules.reason_for(exc)
            if verdict == TRIP:
                circuit.on_failure(token, reason, slow, True)
            elif slow:
                circuit.on_failure(token, reason, True)
            else:
                circuit.on_failure(token, reason)
        else:
            circuit.on_ignored(token)
    except Exception:
        log_record_error(circuit.service)


async def arecord_exception(
    circuit: CircuitHandle, rules: CallRules, token: int, exc: Exception, slow: bool = False
) -> None:
    try:
        verdict = FAILURE if rules.counts_all else rules.judge(exc)
        if verdict:
            reason = rules.failure_reason or rules.reason_for(exc)
            await circuit.aon_failure(token, reason, slow, verdict == TRIP)
        else:
            await circuit.aon_ignored(token)
    except Exception:
        log_record_error(circuit.service)


def release(circuit: CircuitHandle, token: int) -> None:
    try:
        circuit.on_release(token)
    except Exception:
        log_record_error(circuit.service)


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
            log_record_error(circuit.service)
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
            log_record_error(circuit.service)
        raise error


def record_success(circuit: CircuitHandle, token: int) -> None:
    try:
        circuit.on_success(token)
    except Exception:
        log_record_error(circuit.service)


async def arecord_success(circuit: CircuitHandle, token: int) -> None:
    try:
        await circuit.aon_success(token)
    except Exception:
        log_record_error(circuit.service)


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


def admit(
    circuit: CircuitHandle, rules: CallRules, listeners: ListenerList, fallback: Callable[..., Any] | None
) -> int:
    """Decide a call that may not be on the fast path: ``0`` (run and record), a positive trial
    permit (run, record and hand it back), or ``REJECT``: run anyway unrecorded (observe
    mode) or serve ``fallback``. Raises ``CircuitOpenError`` when neither applies."""
    if circuit.state is CLOSED:
        return 0
    token = -1 if circuit.monotonic() < circuit.open_until else circuit.acquire()
    if token < 0:
        _reject(circuit, rules, listeners, fallback)
    return token


async def aadmit(
    circuit: CircuitHandle, rules: CallRules, listeners: ListenerList, fallback: Callable[..., Any] | None
) -> int:
    """``admit`` for async callers: a shared store's I/O never blocks the loop."""
    if circuit.state is CLOSED:
        return 0
    if circuit.monotonic() < circuit.open_until:  # open, its deadline ahead: no need to ask
        token = -1
    else:
        token = circuit.acquire() if circuit.io_free else await circuit.aacquire()
    if token < 0:
        _reject(circuit, rules, listeners, fallback)
    return token


def is_slow(circuit: CircuitHandle, rules: CallRules, start: float | None) -> bool:
    """Did the work started at ``start`` (``None``: not timed) take longer than ``slow_call_seconds``?
    Never raises: it is worked out after the call, whose own result or exception the caller gets
    (a clock that fails is logged, and the call taken as not slow)."""
    if start is None:
        return False
    try:
        return circuit.monotonic() - start > circuit.slow_after  # type: ignore[operator]
    except Exception:
        log_record_error(circuit.service)
        return False


def finish(
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    token: int,
    result: Any,
    slow: bool,
    judge: bool = True,
) -> None:
    """Record a call that returned ``result``; raises ``ReturnValuePolicyError`` if it is a failure
    (``judge=False``: there is no value to judge, a ``guard`` block's clean exit)."""
    if judge and rules.retval_policy is not None:
        check_retval(circuit, rules, token, result, slow)
    if slow:
        try:
            circuit.on_slow_success(token)
        except Exception:
            log_record_error(circuit.service)
    elif token or circuit.dirty or listeners.success_callbacks or circuit.state is DISABLED:
        record_success(circuit, token)
    else:  # closed (or admitted while closed) with nothing to reset: count it, no event
        if listeners.callbacks:
            circuit.counts.success.increment()
        if circuit.tally is not None and circuit.state is CLOSED:
            circuit.tally()


async def afinish(
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    token: int,
    result: Any,
    slow: bool,
    judge: bool = True,
) -> None:
    """``finish`` for async callers."""
    if circuit.io_free:
        finish(circuit, rules, listeners, token, result, slow, judge)
        return
    if judge and rules.retval_policy is not None:
        await acheck_retval(circuit, rules, token, result, slow)
    if slow:
        try:
            await circuit.aon_slow_success(token)
        except Exception:
            log_record_error(circuit.service)
    elif token or circuit.dirty or listeners.success_callbacks or circuit.state is DISABLED:
        await arecord_success(circuit, token)
    else:
        if listeners.callbacks:
            circuit.counts.success.increment()
        if circuit.tally is not None and circuit.state is CLOSED:
            circuit.tally()


async def afail(circuit: CircuitHandle, rules: CallRules, token: int, exc: Exception, slow: bool) -> None:
    """``record_exception`` for async callers."""
    if circuit.io_free:
        record_exception(circuit, rules, token, exc, slow)
    else:
        await arecord_exception(circuit, rules, token, exc, slow)


async def settle(
    awaitable: Awaitable[Any],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    token: int,
    start: float | None = None,
) -> Any:
    """Await what a sync-looking callable returned, then record its outcome (the sync paths'
    way out when the result turns out to be awaitable)."""
    try:
        result = await awaitable
    except Exception as exc:
        await afail(circuit, rules, token, exc, is_slow(circuit, rules, start))
        raise
    except BaseException:
        if token:
            release(circuit, token)
        raise
    await afinish(circuit, rules, listeners, token, result, is_slow(circuit, rules, start))
    return result


_plain_type: list[type] = [type(None)]
"""The type of the last result ``call_sync`` found not awaitable (in a list: storing a module
global would undo CPython's caching of this module's global reads)."""


def call_sync(
    func: Callable[..., R],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    """One call through ``circuit``: admit, run, record. ``execute`` runs it, and a ``protect``
    wrapper every call it does not run inline; the timer runs only under a slow-call policy."""
    token = 0
    if circuit.state is not CLOSED:
        if circuit.monotonic() < circuit.open_until and not (
            circuit.observe or fallback is not None or listeners.callbacks
        ):
            raise circuit.open_error()  # open, its deadline ahead, nothing else to do: ``admit`` inlined
        token = admit(circuit, rules, listeners, fallback)
        if token < 0:
            if circuit.observe:
                return func(*args, **kwargs)
            return fallback(*args, **kwargs)  # type: ignore[misc,no-any-return]
    start = None if circuit.slow_after is None else circuit.monotonic()
    try:
        result = func(*args, **kwargs) if kwargs else func(*args)
    except Exception:  # (see ``current_exception``)
        record_exception(
            circuit, rules, token, current_exception(), start is not None and is_slow(circuit, rules, start)
        )
        raise
    except BaseException:
        if token:
            release(circuit, token)
        raise
    if type(result) is not _plain_type[0]:  # (as the wrappers check it, once per result type)
        if hasattr(result, "__await__") and inspect.isawaitable(result):
            return settle(result, circuit, rules, listeners, token, start)  # type: ignore[return-value]
        _plain_type[0] = type(result)
    if (
        start is None
        and not (token or circuit.dirty)
        and rules.retval_policy is None
        and circuit.state is CLOSED
        and not (listeners.callbacks and listeners.success_callbacks)
    ):  # the healthy path, ``finish`` inlined: closed with nothing to reset, no event wanted
        if listeners.callbacks:
            circuit.counts.success.increment()
        if circuit.tally is not None:
            circuit.tally()
        return result
    finish(circuit, rules, listeners, token, result, start is not None and is_slow(circuit, rules, start))
    return result


async def call_async(
    func: Callable[..., Any],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """``call_sync`` for async callers (``execute_async``, an async ``protect`` wrapper):
    ``func``'s result is awaited if awaitable; no I/O blocks the loop."""
    token = 0
    if circuit.state is not CLOSED:
        if circuit.monotonic() < circuit.open_until and not (
            circuit.observe or fallback is not None or listeners.callbacks
        ):
            raise circuit.open_error()  # as in call_sync
        token = await aadmit(circuit, rules, listeners, fallback)
        if token < 0:
            served = func(*args, **kwargs) if circuit.observe else fallback(*args, **kwargs)  # type: ignore[misc]
            return await served if inspect.isawaitable(served) else served
    start = None if circuit.slow_after is None else circuit.monotonic()
    try:
        result = func(*args, **kwargs) if kwargs else func(*args)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        await afail(circuit, rules, token, exc, start is not None and is_slow(circuit, rules, start))
        raise
    except BaseException:
        # Cancelled or interrupted: no outcome, but the trial permit goes back now.
        if token:
            release(circuit, token)
        raise
    if (
        start is None
        and not (token or circuit.dirty)
        and rules.retval_policy is None
        and circuit.state is CLOSED
        and not (listeners.callbacks and listeners.success_callbacks)
    ):
        if listeners.callbacks:
            circuit.counts.success.increment()
        if circuit.tally is not None:
            circuit.tally()
        return result
    await afinish(
        circuit, rules, listeners, token, result, start is not None and is_slow(circuit, rules, start)
    )
    return result


# The two wrappers below hold a closed circuit's call inline (no helper frame on the
# healthy path, one less frame for an exception to cross): ``protect`` returns them.


def sync_wrapper(
    func: Callable[..., R],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., R]:
    """Wrap a sync ``func`` so that each call goes through ``circuit``.

    The wrapper runs inline a closed (or disabled) circuit's call and a rejection while the
    circuit is open with its deadline ahead; every other call (half-open, or past the deadline:
    the circuit decides; every call of a slow-call policy, which times it) takes the generic
    body, ``call_sync``. What it reads from the circuit's policy is bound in its closure, and
    bound again when the policy changes (``CircuitBreaker.set_policy``): the call path reads
    no policy. (Each variable the wrapper closes over costs every call a little, on CPython:
    the rest is held by partials.)
    """
    success_ticks, rejected_ticks = circuit.counts.success.ticks, circuit.counts.rejected.ticks
    roll, monotonic = circuit.roll_window, circuit.monotonic
    generic_call = functools.partial(call_sync, func, circuit, rules, listeners, fallback)
    serve_rejected = functools.partial(_serve_rejected, func, circuit, listeners, fallback)
    settle_or_finish = functools.partial(_settle_or_finish, circuit, rules, listeners)
    judge = None if rules.retval_policy is None else functools.partial(check_retval, circuit, rules, 0)
    """Raise ``ReturnValuePolicyError`` (after recording the failure) if a result is one."""
    fast_state: CircuitState | None = CLOSED
    """The state in which a call runs inline; ``None`` under a slow-call policy (every call is
    timed in ``call_sync``), so the healthy path pays no extra check for it."""
    fail = _exception_recorder(circuit, rules)
    tally = window = None
    quiet_raise = False
    plain_type: type = type(None)
    """The type of the last result found not awaitable."""

    def bind() -> None:
        nonlocal fast_state, fail, tally, window, quiet_raise
        fast_state = None if circuit.slow_after is not None else CLOSED
        fail = _exception_recorder(circuit, rules)
        window = circuit.window
        tally = None if window is not None else circuit.tally  # (the window is counted inline)
        quiet_raise = not circuit.observe and fallback is None  # a rejection raises, nothing else to do

    bind()

    def run(*args: Any, **kwargs: Any) -> R:
        nonlocal plain_type
        if circuit.state is not fast_state:
            if fast_state is None:
                return generic_call(args, kwargs)
            if monotonic() < circuit.open_until:  # open, its deadline ahead (known here): no need to ask
                if not quiet_raise:
                    return serve_rejected(args, kwargs)  # type: ignore[no-any-return]
                if listeners.callbacks:
                    if listeners.call_callbacks:
                        circuit.on_rejected(False)
                    else:
                        next(rejected_ticks)  # metrics alone: a counter, no event
                raise circuit.open_error()
            if circuit.state is not DISABLED:  # half-open, or its deadline passed: the circuit decides
                return generic_call(args, kwargs)
        try:
            result = func(*args, **kwargs) if kwargs else func(*args)
        except Exception:
            # (``fail`` never raises: a guard here would cost every failure about 40 ns)
            fail(0, current_exception())
            raise
        # Healthy (closed with nothing to reset, no success listener, a plain result): the
        # success is at most counted.
        if circuit.dirty:
            return settle_or_finish(result)  # type: ignore[no-any-return]
        if type(result) is not plain_type:  # (awaitable or not is the type's: checked once)
            if hasattr(result, "__await__"):
                return settle_or_finish(result)  # type: ignore[no-any-return]
            plain_type = type(result)
        if judge is not None:
            judge(result)
        if listeners.callbacks:
            if listeners.success_callbacks:
                return settle_or_finish(result, judge is not None)  # type: ignore[no-any-return]
            # metrics: a counter, no event (under the call's outcome)
            next(success_ticks) if circuit.state is not DISABLED else circuit.counts.disabled.increment()
        if window is not None:  # tally(), inlined: a rate policy on the local backend
            # (closed, or disabled: a disabled window shows nothing and reset clears it)
            if monotonic() >= window.bucket_end:
                roll()
            next(window.ok_counter)
        elif tally is not None and circuit.state is fast_state:
            tally()
        return result

    watch_policy(circuit, run, bind)
    return run


def _exception_recorder(circuit: CircuitHandle, rules: CallRules) -> Callable[[int, BaseException], None]:
    """What the wrappers call with a failed call's token and exception: ``record_exception``,
    or straight to the circuit when every exception counts. It never raises (what goes wrong
    inside is logged), so the wrappers call it unguarded."""
    if not rules.counts_all:
        return functools.partial(record_exception, circuit, rules)
    fixed_reason = rules.failure_reason
    if fixed_reason is None:
        on_exception = circuit.on_exception
        if getattr(circuit, "on_exception_never_raises", False):
            return on_exception

        def guarded(token: int, exc: BaseException) -> None:  # (see ``CircuitHandle.on_exception``)
            try:
                on_exception(token, exc)
            except Exception:
                log_record_error(circuit.service)

        return guarded
    on_failure = circuit.on_failure

    def with_fixed_reason(token: int, _exc: BaseException) -> None:
        try:
            on_failure(token, fixed_reason)
        except Exception:
            log_record_error(circuit.service)

    return with_fixed_reason


def _serve_rejected(
    func: Callable[..., Any],
    circuit: CircuitHandle,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """A wrapper's rejected call that does not just raise: in observe mode it runs anyway
    (unrecorded), else ``fallback`` serves it; the listeners are told first. An awaitable
    it returns is the async wrapper's to await."""
    if circuit.observe:
        if listeners.callbacks:
            circuit.on_rejected(False, True)
        return func(*args, **kwargs)
    if listeners.callbacks:
        if listeners.call_callbacks:
            circuit.on_rejected(fallback is not None)
        else:  # metrics alone: a counter, no event
            (circuit.counts.rejected if fallback is None else circuit.counts.fallback).increment()
    if fallback is None:
        raise circuit.open_error()
    return fallback(*args, **kwargs)


def _settle_or_finish(
    circuit: CircuitHandle, rules: CallRules, listeners: ListenerList, result: Any, judged: bool = False
) -> Any:
    """The sync wrapper's success that is not healthy (something to reset, a success listener,
    an awaitable result): an awaitable result is recorded when it completes (``settle``),
    anything else by ``finish`` (``judged``: under the return-value policy already)."""
    if hasattr(result, "__await__") and inspect.isawaitable(result):
        return settle(result, circuit, rules, listeners, 0)
    finish(circuit, rules, listeners, 0, result, False, not judged)
    return result


def async_wrapper(
    func: Callable[..., Awaitable[R]],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., Awaitable[R]]:
    """Wrap an async ``func``: ``sync_wrapper``'s shape, with ``call_async`` as the generic
    body; storage I/O on this path uses the backend's async methods."""
    success_ticks, rejected_ticks = circuit.counts.success.ticks, circuit.counts.rejected.ticks
    roll, monotonic = circuit.roll_window, circuit.monotonic
    generic_call = functools.partial(call_async, func, circuit, rules, listeners, fallback)
    serve_rejected = functools.partial(_serve_rejected, func, circuit, listeners, fallback)
    finish_success = functools.partial(afinish, circuit, rules, listeners, 0)
    record_remote = functools.partial(arecord_exception, circuit, rules)
    judge = None if rules.retval_policy is None else functools.partial(acheck_retval, circuit, rules, 0)
    fast_state: CircuitState | None = CLOSED
    fail: Callable[[int, BaseException], None] | None = None
    """How a failure is recorded without an ``await`` (``None``: the store does I/O)."""
    tally = window = None
    quiet_raise = False

    def bind() -> None:
        nonlocal fast_state, fail, tally, window, quiet_raise
        fast_state = None if circuit.slow_after is not None else CLOSED
        fail = _exception_recorder(circuit, rules) if circuit.io_free else None
        window = circuit.window
        tally = None if window is not None else circuit.tally
        quiet_raise = not circuit.observe and fallback is None

    bind()

    async def run(*args: Any, **kwargs: Any) -> R:
        if circuit.state is not fast_state:  # (see sync_wrapper)
            if fast_state is None:
                return await generic_call(args, kwargs)  # type: ignore[no-any-return]
            if monotonic() < circuit.open_until:
                if not quiet_raise:
                    served = serve_rejected(args, kwargs)
                    return await served if inspect.isawaitable(served) else served  # type: ignore[no-any-return]
                if listeners.callbacks:
                    if listeners.call_callbacks:
                        circuit.on_rejected(False)
                    else:
                        next(rejected_ticks)
                raise circuit.open_error()
            if circuit.state is not DISABLED:
                return await generic_call(args, kwargs)  # type: ignore[no-any-return]
        try:
            result = await (func(*args, **kwargs) if kwargs else func(*args))
        except Exception:  # (see sync_wrapper)
            if fail is not None:
                fail(0, current_exception())
            else:
                await record_remote(0, current_exception())
            raise
        if circuit.dirty:  # (healthy: see sync_wrapper)
            await finish_success(result, False)
            return result
        if judge is not None:
            await judge(result)
        if listeners.callbacks:
            if listeners.success_callbacks:
                await finish_success(result, False, judge is None)  # (judged already, if it had to be)
                return result
            next(success_ticks) if circuit.state is not DISABLED else circuit.counts.disabled.increment()
        if window is not None:
            if monotonic() >= window.bucket_end:
                roll()
            next(window.ok_counter)
        elif tally is not None and circuit.state is fast_state:
            tally()
        return result

    watch_policy(circuit, run, bind)
    return run


def watch_policy(circuit: CircuitHandle, wrapper: Callable[..., Any], bind: Callable[[], None]) -> None:
    """Have ``bind`` called whenever ``circuit``'s policy changes, for as long as ``wrapper``
    lives (a circuit from a backend that cannot change policies has no watchers)."""
    watchers = getattr(circuit, "policy_watchers", None)
    if watchers is not None:
        watchers[wrapper] = bind


def _reject(
    circuit: CircuitHandle, rules: CallRules, listeners: ListenerList, fallback: Callable[..., Any] | None
) -> None:
    """Tell listeners about a rejected call; raise ``CircuitOpenError`` unless it runs anyway
    (observe mode) or a fallback serves it."""
    if listeners.callbacks:
        circuit.on_rejected(fallback is not None and not circuit.observe, circuit.observe)
    if not circuit.observe and fallback is None:
        raise circuit.open_error()


def protected(
    func: Callable[..., Any],
    circuit: CircuitHandle,
    rules: CallRules,
    listeners: ListenerList,
    fallback: Callable[..., Any] | None,
) -> Callable[..., Any]:
    """The wrapper ``protect`` returns: sync or ``async def`` like ``func`` (a generator function
    for a generator function, see ``_generators``), with its metadata."""
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        from ._generators import async_generator_wrapper, generator_wrapper

        wrap = async_generator_wrapper if inspect.isasyncgenfunction(func) else generator_wrapper
        return wrap(func, circuit, rules, listeners, fallback)
    if is_coroutine_callable(func):
        return functools.wraps(func)(async_wrapper(func, circuit, rules, listeners, fallback))
    return functools.wraps(func)(sync_wrapper(func, circuit, rules, listeners, fallback))
