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

from ._call import CallRules, call_async, call_sync
from .policies import ReturnValuePolicy, ServicePolicy

if TYPE_CHECKING:
    from .breaker import CircuitBreaker

__all__ = ["Caller"]

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
    """

    __slots__ = ("_breaker", "_overrides", "_rules")

    def __init__(
        self,
        breaker: CircuitBreaker,
        failure_reason: str | None,
        ignore_exceptions: Iterable[type[BaseException]] | None,
        on_exceptions: Iterable[type[BaseException]] | None,
        on_retval_policy: ReturnValuePolicy | None,
    ) -> None:
        self._breaker = breaker
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

    def call(self, service: str, func: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Call ``func(*args, **kwargs)`` through ``service``'s circuit and return its result."""
        circuit = self._breaker._circuit(service)
        rules = self._rules_for(circuit.policy)
        return call_sync(func, circuit, rules, self._breaker._listeners, None, args, kwargs)

    async def acall(self, service: str, func: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Await ``func(*args, **kwargs)`` through ``service``'s circuit and return its result."""
        circuit = self._breaker._circuit(service)
        rules = self._rules_for(circuit.policy)
        return await call_async(func, circuit, rules, self._breaker._listeners, args, kwargs)
