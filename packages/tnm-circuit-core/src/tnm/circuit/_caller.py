"""``Caller``: calls through circuits named per call, for adapters with one circuit per upstream.

``protect`` builds a wrapper bound to one circuit, and that circuit is then kept for the
breaker's lifetime. A client adapter that names its circuit per request (one per
``host:port``) cannot keep a wrapper per host: a crawler calls an unbounded set of hosts.
A ``Caller`` resolves the overrides once and looks the circuit up by name at each call,
so nothing is held per service and an idle circuit is dropped like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from . import _validate
from ._call import (
    aadmit,
    admit,
    arecord_success,
    call_async,
    call_sync,
    record_success,
    release,
)
from ._rules import CallRules
from .backends.base import CircuitHandle, log_record_error
from .events import ListenerList
from .policies import ExceptionRule, ReturnValuePolicy, ServicePolicy
from .state import CLOSED

if TYPE_CHECKING:
    from .breaker import CircuitBreaker

__all__ = ["Admitted", "Caller"]

R = TypeVar("R")


class Caller:
    """Runs calls through the circuit of a service named at each call, with fixed overrides.

    Made by ``CircuitBreaker.caller(...)``. ``call(service, func, *args, **kwargs)`` is
    ``breaker.execute(service, func, *args, **kwargs)`` with the caller's overrides,
    without resolving them again; ``await acall(service, coro_func, *args, **kwargs)``
    is its async twin for a coroutine function (a shared store's I/O never blocks the
    loop; a cancelled call gives its half-open trial permit back). A rejected call
    raises ``CircuitOpenError``. Unlike a ``protect`` wrapper, a caller holds nothing per
    service: a service it no longer calls is dropped after ``meta_ttl_seconds`` unless
    its circuit is open, failing or forced, and a later call finds the breaker's circuit
    for that name, never a second one.

    For a call whose outcome is known later than its function returns (a streamed
    response, a future), ``admit(service)`` (or ``await aadmit(service)``) lets it through
    or raises ``CircuitOpenError``, and the ``Admitted`` it returns takes the outcome once.
    """

    __slots__ = ("_breaker", "_monotonic", "_overrides", "_rules")

    def __init__(
        self,
        breaker: CircuitBreaker,
        failure_reason: str | None,
        ignore_exceptions: Iterable[ExceptionRule] | None,
        on_exceptions: Iterable[ExceptionRule] | None,
        on_retval_policy: ReturnValuePolicy | None,
    ) -> None:
        self._breaker = breaker
        self._monotonic = breaker.clock.monotonic
        policy = breaker.default_policy
        # Checked now (a bad override is refused naming it), and kept in checked form.
        rules = CallRules(policy, failure_reason, ignore_exceptions, on_exceptions, on_retval_policy)
        self._overrides = (
            failure_reason,
            None if ignore_exceptions is None else rules.ignore,
            None if on_exceptions is None else rules.on,
            on_retval_policy,
        )
        self._rules: dict[int, tuple[ServicePolicy, CallRules]] = {id(policy): (policy, rules)}
        """Rules per policy (by identity): bounded by the breaker's policies, not by services."""

    def __repr__(self) -> str:
        return f"Caller({self._breaker!r})"

    def _rules_for(self, policy: ServicePolicy) -> CallRules:
        entry = self._rules.get(id(policy))
        if entry is None or entry[0] is not policy:
            if len(self._rules) >= 256:  # policies replaced over and over: start again
                self._rules.clear()
            entry = self._rules[id(policy)] = (policy, CallRules(policy, *self._overrides))
        return entry[1]

    def _circuit(self, service: str) -> CircuitHandle:
        """The breaker's circuit for ``service``, once idle circuits are dropped if that is due.

        The breaker sweeps when it makes a circuit; a client that goes on calling only hosts it
        knows would never make one, and the hosts it stopped calling would stay: a caller
        checks the sweep's time at each call (one clock read).
        """
        breaker = self._breaker
        if self._monotonic() - breaker._swept_at >= breaker._idle_after:
            with breaker._lock:
                breaker._sweep_if_due()
        return breaker._circuit(service)

    def call(self, service: str, func: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Call ``func(*args, **kwargs)`` through ``service``'s circuit and return its result."""
        breaker = self._breaker  # _circuit and _rules_for, inlined: this runs on every request
        if self._monotonic() - breaker._swept_at >= breaker._idle_after:
            circuit = self._circuit(service)
        else:
            circuit = breaker._circuits.get(service) or breaker._circuit_slow(service)
        policy = circuit.policy
        entry = self._rules.get(id(policy))
        rules = entry[1] if entry is not None and entry[0] is policy else self._rules_for(policy)
        return call_sync(func, circuit, rules, breaker._listeners, None, args, kwargs)

    async def acall(self, service: str, func: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Await ``func(*args, **kwargs)`` through ``service``'s circuit and return its result."""
        circuit = self._circuit(service)
        rules = self._rules_for(circuit.policy)
        return await call_async(func, circuit, rules, self._breaker._listeners, None, args, kwargs)  # type: ignore[no-any-return]

    def admit(self, service: str) -> Admitted:
        """Let one call to ``service`` start (taking a half-open trial permit if needed), or raise
        ``CircuitOpenError``; report its outcome on the returned ``Admitted``, exactly once."""
        breaker = self._breaker
        circuit = self._circuit(service)
        token = 0
        if circuit.state is not CLOSED:
            token = admit(circuit, self._rules_for(circuit.policy), breaker._listeners, None)
            if token < 0:
                return Admitted(circuit, breaker._listeners, 0, recording=False)  # observe mode
        return Admitted(circuit, breaker._listeners, token)

    async def aadmit(self, service: str) -> Admitted:
        """``admit`` for async code: a shared store's I/O never blocks the loop."""
        breaker = self._breaker
        circuit = self._circuit(service)
        token = 0
        if circuit.state is not CLOSED:
            token = await aadmit(circuit, self._rules_for(circuit.policy), breaker._listeners, None)
            if token < 0:
                return Admitted(circuit, breaker._listeners, 0, recording=False)
        return Admitted(circuit, breaker._listeners, token)


class Admitted:
    """A call ``Caller.admit`` let through, whose outcome is reported when it is known.

    Call one of ``success()``, ``failure(reason)`` or ``release()`` (no outcome: cancelled),
    or their async twins, once. None of them raises: a breaker that cannot record logs it.
    A call that ran only because the circuit is in observe mode records nothing.
    """

    __slots__ = ("_circuit", "_listeners", "_recording", "_token")

    def __init__(
        self, circuit: CircuitHandle, listeners: ListenerList, token: int, recording: bool = True
    ) -> None:
        self._circuit = circuit
        self._listeners = listeners
        self._token = token
        self._recording = recording

    def _quiet_success(self) -> bool:
        """Count a closed circuit's success that needs no store (True), as the call paths do."""
        circuit = self._circuit
        if self._token or circuit.dirty or self._listeners.success_callbacks:
            return False
        if self._listeners.callbacks:
            circuit.counts.success.increment()
        if circuit.tally is not None and circuit.state is CLOSED:
            circuit.tally()
        return True

    def success(self) -> None:
        if self._recording and not self._quiet_success():
            record_success(self._circuit, self._token)

    async def asuccess(self) -> None:
        if self._recording and not self._quiet_success():
            if self._circuit.io_free:
                record_success(self._circuit, self._token)
            else:
                await arecord_success(self._circuit, self._token)

    def failure(self, reason: str) -> None:
        if self._recording:
            try:
                self._circuit.on_failure(self._token, _validate.bounded_reason(reason))
            except Exception:
                log_record_error(self._circuit.service)

    async def afailure(self, reason: str) -> None:
        if self._recording:
            try:
                await self._circuit.aon_failure(self._token, _validate.bounded_reason(reason))
            except Exception:
                log_record_error(self._circuit.service)

    def release(self) -> None:
        if self._recording and self._token:
            release(self._circuit, self._token)
