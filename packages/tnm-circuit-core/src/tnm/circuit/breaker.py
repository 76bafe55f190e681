"""``CircuitBreaker``: one object per app that guards every downstream service by name."""

from __future__ import annotations

import difflib
import inspect
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from . import _validate
from ._call import call_async, call_sync, protected
from ._caller import Admitted, Caller
from ._guard import Guard
from ._policy_book import PolicyBook, announce, refusal
from ._policy_overrides import changes, check_patch, merge, patch_of
from ._rules import CallRules
from .backends.base import Backend, CircuitHandle
from .backends.local import LocalBackend
from .clock import Clock, SystemClock
from .events import Listener, ListenerList
from .exceptions import CircuitError, InvalidConfigError, InvalidConfigTypeError
from .policies import ExceptionRule, ReturnValuePolicy, ServicePolicy
from .state import CircuitSnapshot, CircuitState

__all__ = ["Admitted", "Caller", "CircuitBreaker", "get_breaker"]

# Defined in a private module and exported from this one: they report this one (as httpx's do).
Admitted.__module__ = Caller.__module__ = __name__

_P = ParamSpec("_P")
_R = TypeVar("_R")

_BACKENDS = ("local", "redis")
_FORCED_OPEN = "forced open"
_DISABLED = "disabled"


# Options the breaker passes to a backend itself: never the user's to give.
_INTERNAL_OPTIONS = frozenset({"self", "listeners", "clock", "redis_url", "namespace", "meta_ttl_seconds"})


def _hint(name: str, choices: Iterable[str] = ()) -> str:
    close = difflib.get_close_matches(name, [*choices, "redis_url", "namespace", "meta_ttl_seconds"], n=1)
    return f"; did you mean {close[0]!r}?" if close and close[0] != name else ""


def _check_options(backend_class: type, options: Mapping[str, Any]) -> None:
    """Name the first option ``backend_class`` does not take, before it raises a bare TypeError."""
    accepted = [
        name
        for name, param in inspect.signature(backend_class).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY and name not in _INTERNAL_OPTIONS
    ]
    for name in sorted(options):
        if name not in accepted:
            takes = ", ".join(accepted)
            raise InvalidConfigError(
                name, f"unknown option of the redis backend (it takes {takes}){_hint(name, accepted)}"
            )


def _check_fallback(fallback: object) -> None:
    if fallback is not None and not callable(fallback):
        raise InvalidConfigTypeError("fallback", f"must be callable, got {fallback!r}")


class CircuitBreaker:
    """Decides, per downstream service, whether calls may go through.

    Build one at start-up and share it. Services are named by plain strings, compared
    exactly (``"my-service"`` and ``"My-Service"`` are two circuits); each uses its
    entry in ``service_policies`` or else ``default_policy``.

    ``backend`` is ``"local"`` (state in this process) or ``"redis"`` (state shared by
    every process using the same Redis and ``namespace``), or a backend object. Left
    out, it is ``"redis"`` if ``redis_url`` is given and ``"local"`` otherwise; a
    ``redis_url`` with ``backend="local"`` is an ``InvalidConfigError`` (field
    ``redis_url``), never silently ignored. Other keyword arguments are options of the
    Redis backend (``socket_timeout``, ``on_storage_error``…); a name it does not take
    is an ``InvalidConfigError`` whose field is that name. ``clock`` replaces the system
    clocks, for tests.
    """

    def __init__(
        self,
        backend: str | Backend | None = None,
        *,
        default_policy: ServicePolicy | None = None,
        service_policies: Mapping[str, ServicePolicy] | None = None,
        clock: Clock | None = None,
        redis_url: str | None = None,
        namespace: str = "tnm:circuit",
        meta_ttl_seconds: float = 300,
        **backend_options: Any,
    ) -> None:
        if default_policy is None:
            default_policy = ServicePolicy()
        elif not isinstance(default_policy, ServicePolicy):
            raise InvalidConfigTypeError("default_policy", f"must be a ServicePolicy, got {default_policy!r}")
        policies: dict[str, ServicePolicy] = {}
        if service_policies is not None:
            if not isinstance(service_policies, Mapping):
                raise InvalidConfigTypeError(
                    "service_policies",
                    f"must be a mapping of name to ServicePolicy, got {service_policies!r}",
                )
            for name, policy in service_policies.items():
                _validate.service_name(name, "service_policies")
                if not isinstance(policy, ServicePolicy):
                    raise InvalidConfigTypeError(
                        f"service_policies[{name!r}]", f"must be a ServicePolicy, got {policy!r}"
                    )
                policies[name] = policy
        self.default_policy = default_policy
        self.service_policies: Mapping[str, ServicePolicy] = policies
        self._policies = PolicyBook(default_policy, policies)
        self._policy_lock = threading.RLock()
        self.clock: Clock = SystemClock() if clock is None else clock
        self._listeners = ListenerList()
        self._circuits: dict[str, CircuitHandle] = {}
        """Circuits used since the last sweep (the call path reads this dict only)."""
        self._idle: dict[str, CircuitHandle] = {}
        """Circuits not used since the last sweep: dropped at the next one if closed and clean."""
        self._pinned: dict[str, weakref.WeakSet[Callable[..., Any]]] = {}
        """Services with a live ``protect`` wrapper (or decorator): it holds the handle, so the
        circuit is kept while it lives, and may be dropped once it is gone."""
        self._lock = threading.Lock()
        self._swept_at = self.clock.monotonic()
        self._idle_after = _validate.duration("meta_ttl_seconds", meta_ttl_seconds, allow_zero=False)
        self._policy_rules: dict[str, CallRules] = {}
        self._backend: Backend = self._make_backend(
            backend, redis_url, namespace, meta_ttl_seconds, backend_options
        )
        self._initialized = False
        if hasattr(self._backend, "on_policy_override"):
            self._backend.on_policy_override = self._fleet_override

    def _make_backend(
        self,
        backend: str | Backend | None,
        redis_url: str | None,
        namespace: str,
        meta_ttl_seconds: float,
        options: dict[str, Any],
    ) -> Backend:
        if backend is None:
            backend = "local" if redis_url is None else "redis"
        if not isinstance(backend, str):
            if not callable(getattr(backend, "circuit", None)):
                raise InvalidConfigTypeError(
                    "backend", f"must be 'local', 'redis' or a backend object, got {backend!r}"
                )
            use = getattr(backend, "use", None)
            if callable(use):
                # A ready backend (RedisBackend) takes the breaker's clock and listeners unless
                # it was given its own; either way, breaker and backend share one listener list.
                use(self.clock, self._listeners)
                shared = getattr(backend, "listeners", None)
                if isinstance(shared, ListenerList):
                    self._listeners = shared
            return backend
        if backend == "local":
            if redis_url is not None:
                # A URL that is silently unused makes every process decide alone while the
                # operator believes state is shared (and `status --check` always passes).
                raise InvalidConfigError(
                    "redis_url", "is only used by the redis backend: pass backend='redis' or drop redis_url"
                )
            if options:
                # namespace/meta_ttl_seconds are accepted (and unused) so that one
                # configuration can switch backends; anything else is most likely a typo.
                name = sorted(options)[0]
                raise InvalidConfigError(name, f"unknown option (the local backend takes none){_hint(name)}")
            return LocalBackend()
        if backend == "redis":
            try:
                from .backends.redis import RedisBackend
            except ImportError as exc:
                raise InvalidConfigError("backend", str(exc)) from None
            _check_options(RedisBackend, options)
            return RedisBackend(
                redis_url,
                namespace=namespace,
                meta_ttl_seconds=meta_ttl_seconds,
                listeners=self._listeners,
                clock=self.clock,
                **options,
            )
        raise InvalidConfigError("backend", f"must be one of {_BACKENDS}, got {backend!r}")

    def __repr__(self) -> str:
        return f"CircuitBreaker(backend={self._backend!r})"

    @property
    def backend(self) -> Backend:
        """Where this breaker's circuits live (``backend.name``: ``"local"`` or ``"redis"``)."""
        return self._backend

    @property
    def storage_available(self) -> bool:
        """False while a shared store (Redis) is unreachable and calls are decided without it.

        Always True for the local backend. While False, ``state``/``states`` show this
        process's own view (or the configured ``on_storage_error`` behaviour), not the
        fleet's: health pages and ``tnm-circuit status`` say so.
        """
        return not getattr(self._backend, "degraded", False)

    # -- lifecycle -------------------------------------------------------------

    def initialize(self) -> None:
        """Connect the backend (a no-op for ``local``). Raises ``CircuitError`` on failure."""
        self._backend.initialize()
        self._initialized = True

    async def ainitialize(self) -> None:
        """``initialize`` for async apps: never blocks the event loop."""
        await self._backend.ainitialize()
        self._initialized = True

    def close(self) -> None:
        """Release the backend's connections and threads (a no-op for ``local``)."""
        self._backend.close()
        self._initialized = False

    async def aclose(self) -> None:
        """``close`` for async apps: never blocks the event loop."""
        await self._backend.aclose()
        self._initialized = False

    @property
    def initialized(self) -> bool:
        """True between ``initialize`` and ``close``."""
        return self._initialized

    def __enter__(self) -> CircuitBreaker:
        self.initialize()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> CircuitBreaker:
        await self.ainitialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- circuits and policies -------------------------------------------------

    def policy_for(self, service: str) -> ServicePolicy:
        """The policy that governs ``service`` now: a fleet override (Redis), else this process's
        override (``set_policy``), else its own in ``service_policies``, else the default."""
        policies = self._policies
        if policies.default is not self.default_policy or policies.services is not self.service_policies:
            # Replaced after construction (tests do): follow them.
            policies.default, policies.services = self.default_policy, self.service_policies
        return policies.effective(service)

    def policy_source(self, service: str) -> str:
        """Where ``service``'s effective policy comes from: ``"fleet"`` (an override stored in
        Redis for every process), ``"process"`` (``set_policy`` in this process) or ``"code"``."""
        _validate.service_name(service)
        return self._policies.source(service)

    def set_policy(
        self, service: str, policy: ServicePolicy | Mapping[str, Any], *, fleet: bool = False
    ) -> None:
        """Govern ``service`` by ``policy`` from now on, without a restart.

        Future calls use it, and the live circuit goes on under it: failures counted so far
        stay, so a lower threshold already met opens the circuit at its next failure; an open
        circuit keeps its deadline unless the new ``open_seconds`` is shorter than what is
        left (then it is cut to it). Wrappers made earlier by ``protect`` see the change;
        their exception and return-value rules stay as decorated. Emits ``POLICY_CHANGED``.

        ``fleet=True`` (Redis backend): stores the policy's numeric and mode fields for every
        process of the namespace, which merge them over their own code policy within
        ``refresh_interval`` (see the guide's "Changing a policy at run time"); exception
        rules, return-value rules and predicates stay each process's code's; the fields given
        are merged into the stored override. A fleet override wins over a process override.

        ``policy`` may also be a mapping of just the numeric and mode fields to change
        (``{"max_failures": 3}``): in this process they replace those of the policy in force.
        ``CircuitBackendError`` if the store cannot take it. Bad input raises
        ``InvalidConfigError`` naming the field, and nothing is stored or applied.
        """
        _validate.service_name(service)
        if fleet:
            if isinstance(policy, ServicePolicy):
                patch = patch_of(policy)
            elif isinstance(policy, Mapping):
                patch = check_patch(policy)
            else:
                raise InvalidConfigTypeError(
                    "policy", f"must be a ServicePolicy or a mapping, got {policy!r}"
                )
            self._fleet_store().store(service, patch)  # applied here through the backend's hook
            return
        if isinstance(policy, Mapping):
            policy = merge(self.policy_for(service), check_patch(policy))
        elif not isinstance(policy, ServicePolicy):
            raise InvalidConfigTypeError("policy", f"must be a ServicePolicy or a mapping, got {policy!r}")
        with self._lock:
            before = self.policy_for(service)
            self._policies.process[service] = policy
        self._policy_changed(service, before)

    def clear_policy(self, service: str, *, fleet: bool = False) -> None:
        """Drop ``service``'s override made by ``set_policy`` in this process (``fleet=True``: the
        fleet-wide one, for every process); it goes back to the next source (fleet, then code)."""
        _validate.service_name(service)
        if fleet:
            self._fleet_store().clear(service)  # applied here through the backend's hook
            return
        with self._lock:
            before = self.policy_for(service)
            had = self._policies.process.pop(service, None)
        if had is not None:
            self._policy_changed(service, before)

    def policy_overrides(self) -> dict[str, dict[str, Any]]:
        """The fleet-wide overrides stored in the namespace: service -> the fields it sets (empty
        on the local backend). Read from the store; ``CircuitBackendError`` if it is unreachable."""
        store = getattr(self._backend, "policy_overrides", None)
        return {} if store is None else store.read_all()

    def _fleet_override(
        self, service: str, patch: Mapping[str, Any] | None, unknown: Iterable[str] = ()
    ) -> None:
        """Apply the fleet override of ``service`` read from the store (``None``: none any more).

        Called by the backend when it learns of one (a notice, the refresher, ``initialize``).
        The patch is merged over this process's code policy and validated; a patch invalid
        here is not applied (one warning and a refused ``POLICY_CHANGED``), never half-applied.
        Unknown fields (from a newer release) are ignored with one warning.
        """
        with self._lock:
            before = self.policy_for(service)
            changed, refused = self._policies.take_fleet(service, patch)
        self._policies.warn_unknown(service, unknown)
        if not changed:
            return
        if refused is not None:
            circuit = self._circuits.get(service) or self._idle.get(service)
            announce(
                self._listeners,
                service,
                self._policies.source(service),
                refusal(refused),
                self.clock.time(),
                None if circuit is None else circuit.state,
                refused=True,
            )
            return
        self._policy_changed(service, before)

    def _fleet_store(self) -> Any:
        store = getattr(self._backend, "policy_overrides", None)
        if store is None:
            raise InvalidConfigError(
                "fleet",
                f"needs the redis backend (this breaker's is {getattr(self._backend, 'name', '?')!r}): "
                "set_policy(service, policy) changes this process only",
            )
        return store

    def _policy_changed(self, service: str, before: ServicePolicy) -> None:
        """Apply ``service``'s new effective policy to its live circuit and announce it.

        Changes are applied one at a time (``_policy_lock``), so two changes made at once (here
        and by the refresher) reach the circuit in the order the book took them."""
        with self._policy_lock:
            with self._lock:
                new = self.policy_for(service)
                source = self._policies.source(service)
                circuit = self._circuits.get(service) or self._idle.get(service)
                self._policy_rules.pop(service, None)
            if circuit is not None and circuit.policy is not new:
                set_policy = getattr(circuit, "set_policy", None)
                if set_policy is not None:
                    set_policy(new)
        state = None if circuit is None else circuit.state
        announce(self._listeners, service, source, changes(before, new), self.clock.time(), state)

    def _circuit(self, service: str) -> CircuitHandle:
        circuit = self._circuits.get(service)
        if circuit is None:
            circuit = self._circuit_slow(service)
        return circuit

    def _circuit_slow(self, service: str) -> CircuitHandle:
        _validate.service_name(service)
        with self._lock:
            self._sweep_if_due()
            circuit = self._circuits.get(service) or self._idle.pop(service, None)
            if circuit is None:
                policy = self.policy_for(service)
                circuit = self._backend.circuit(service, policy, self.clock, self._listeners)
            self._circuits[service] = circuit
        return circuit

    def _sweep_if_due(self) -> None:
        """Drop circuits unused for a whole ``meta_ttl_seconds`` that are closed with no failures.

        Memory then follows the services in use (a process that called 100,000 names once
        does not keep 100,000 circuits). Runs when a circuit is made or ``states()`` is read,
        at most once per ``meta_ttl_seconds``; the call path pays nothing for it. A dropped
        circuit is made again on its next use, from the shared state on Redis or closed
        and clean locally, which is what it was.
        """
        now = self.clock.monotonic()
        if now - self._swept_at < self._idle_after:
            return
        forget = getattr(self._backend, "forget", None)
        kept: dict[str, CircuitHandle] = {}
        for name, circuit in self._idle.items():
            clean = circuit.state is CircuitState.CLOSED and not circuit.dirty
            if self._pinned.get(name) or forget is None or not (clean or getattr(circuit, "cold", False)):
                kept[name] = circuit
            else:
                forget(name, circuit)
                self._policy_rules.pop(name, None)
        self._idle, self._circuits = self._circuits, kept
        self._pinned = {name: pins for name, pins in self._pinned.items() if pins}
        self._swept_at = now

    # -- protecting calls ------------------------------------------------------

    def protect(
        self,
        service: str,
        *,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[ExceptionRule] | None = None,
        on_exceptions: Iterable[ExceptionRule] | None = None,
        on_retval_policy: ReturnValuePolicy | None = None,
        fallback: Callable[..., Any] | None = None,
    ) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
        """Decorate a sync or async function so that its calls go through ``service``'s circuit.

        Overrides are resolved now, when the decorator is applied. When the circuit
        rejects a call, ``fallback(*args, **kwargs)`` is returned if given, else
        ``CircuitOpenError`` is raised. The wrapper keeps the function's name,
        docstring, signature and ``__wrapped__``.

        A coroutine callable (an ``async def``, a ``functools.partial`` of one, or an
        object whose ``__call__`` is ``async def``) gets an ``async def`` wrapper. Any
        other callable that returns an awaitable (a function wrapped by another
        library, say) gets that awaitable back wrapped: its outcome is recorded when
        it completes.
        """
        circuit = self._circuit(service)
        rules = self._rules(
            circuit, failure_reason, ignore_exceptions, on_exceptions, on_retval_policy, fallback
        )
        listeners = self._listeners

        def decorator(func: Callable[_P, _R]) -> Callable[_P, _R]:
            if not callable(func):
                raise InvalidConfigTypeError("func", f"protect() needs a callable, got {func!r}")
            wrapper = protected(func, circuit, rules, listeners, fallback)
            self._pin(service, wrapper)
            return wrapper

        self._pin(service, decorator)
        return decorator

    def _pin(self, service: str, holder: Callable[..., Any]) -> None:
        """Keep ``service``'s circuit while ``holder`` (a wrapper holding its handle) lives."""
        with self._lock:
            pins = self._pinned.get(service)
            if pins is None:
                pins = self._pinned[service] = weakref.WeakSet()
            pins.add(holder)

    def caller(
        self,
        *,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[ExceptionRule] | None = None,
        on_exceptions: Iterable[ExceptionRule] | None = None,
        on_retval_policy: ReturnValuePolicy | None = None,
    ) -> Caller:
        """A ``Caller``: calls through the circuit of a service named at each call, with these
        overrides resolved once (``caller.call(service, func, *args)``,
        ``await caller.acall(service, coro_func, *args)``).

        For code that picks the service per call from an unbounded set (one circuit per
        upstream host): unlike ``protect``, nothing is kept per service, so a service no
        longer called is dropped after ``meta_ttl_seconds`` like any idle circuit.
        """
        return Caller(self, failure_reason, ignore_exceptions, on_exceptions, on_retval_policy)

    def _rules(
        self,
        circuit: CircuitHandle,
        failure_reason: str | None,
        ignore_exceptions: Iterable[ExceptionRule] | None,
        on_exceptions: Iterable[ExceptionRule] | None,
        on_retval_policy: ReturnValuePolicy | None,
        fallback: Callable[..., Any] | None,
    ) -> CallRules:
        _check_fallback(fallback)
        if (
            failure_reason is None
            and ignore_exceptions is None
            and on_exceptions is None
            and on_retval_policy is None
        ):
            rules = self._policy_rules.get(circuit.service)
            if rules is None:
                rules = self._policy_rules[circuit.service] = CallRules(circuit.policy)
            return rules
        return CallRules(circuit.policy, failure_reason, ignore_exceptions, on_exceptions, on_retval_policy)

    def guard(
        self,
        service: str,
        *,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[ExceptionRule] | None = None,
        on_exceptions: Iterable[ExceptionRule] | None = None,
    ) -> Guard:
        """A context manager that runs a block as one call through ``service``'s circuit.

        ``with breaker.guard("payments"):`` (or ``async with``) admits the block like
        ``execute`` admits a call: ``CircuitOpenError`` is raised on entry when the circuit
        rejects it, and a half-open circuit's trial permit is taken. An exception leaving
        the block counts under the same rules as ``protect`` (``on_exceptions``,
        ``ignore_exceptions``, ``failure_reason``) and always propagates unchanged; a
        clean exit is a success; a slow-call policy times the block. A cancellation or
        ``KeyboardInterrupt`` records nothing and gives a trial permit back. One guard
        serves one block at a time (build one per block, or reuse it for blocks in turn).
        """
        circuit = self._circuit(service)
        rules = self._rules(circuit, failure_reason, ignore_exceptions, on_exceptions, None, None)
        return Guard(lambda: self._circuit(service), rules, self._listeners)

    def execute(
        self,
        service: str,
        func: Callable[..., _R],
        /,
        *args: Any,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[ExceptionRule] | None = None,
        on_exceptions: Iterable[ExceptionRule] | None = None,
        on_retval_policy: ReturnValuePolicy | None = None,
        fallback: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> _R:
        """Call ``func(*args, **kwargs)`` through ``service``'s circuit and return its result.

        Meant for sync callables; in async code use ``execute_async``. If ``func``
        returns an awaitable anyway, it is returned wrapped, and its outcome is
        recorded when it completes. Overrides are resolved at each call. A ``func``
        that is not callable is an ``InvalidConfigTypeError`` (a programming error,
        never counted as a failure).
        """
        if not callable(func):
            raise InvalidConfigTypeError("func", f"execute() needs a callable, got {func!r}")
        # (a subscript in a try costs less than .get() when the key is there: the common call;
        # what a miss does runs after the except block, so its errors are not chained to it)
        try:
            circuit = self._circuits[service]
        except KeyError:
            circuit = None
        if circuit is None:
            circuit = self._circuit_slow(service)
        if (  # the common call: the policy's rules, made once per service (``_rules`` inlined)
            failure_reason is None
            and ignore_exceptions is None
            and on_exceptions is None
            and on_retval_policy is None
            and fallback is None
        ):
            try:
                rules = self._policy_rules[service]
            except KeyError:
                rules = None
            if rules is None:
                rules = self._rules(circuit, None, None, None, None, None)
        else:
            rules = self._rules(
                circuit, failure_reason, ignore_exceptions, on_exceptions, on_retval_policy, fallback
            )
        return call_sync(func, circuit, rules, self._listeners, fallback, args, kwargs)

    @overload
    async def execute_async(
        self,
        service: str,
        call: Callable[..., Awaitable[_R]],
        /,
        *args: Any,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[ExceptionRule] | None = None,
        on_exceptions: Iterable[ExceptionRule] | None = None,
        on_retval_policy: ReturnValuePolicy | None = None,
        fallback: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> _R: ...

    @overload
    async def execute_async(
        self,
        service: str,
        call: Awaitable[_R],
        /,
        *args: Any,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[ExceptionRule] | None = None,
        on_exceptions: Iterable[ExceptionRule] | None = None,
        on_retval_policy: ReturnValuePolicy | None = None,
        fallback: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> _R: ...

    @overload
    async def execute_async(
        self,
        service: str,
        call: Callable[..., _R],
        /,
        *args: Any,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[ExceptionRule] | None = None,
        on_exceptions: Iterable[ExceptionRule] | None = None,
        on_retval_policy: ReturnValuePolicy | None = None,
        fallback: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> _R: ...

    async def execute_async(
        self,
        service: str,
        call: Callable[..., Any] | Awaitable[Any],
        /,
        *args: Any,
        failure_reason: str | None = None,
        ignore_exceptions: Iterable[ExceptionRule] | None = None,
        on_exceptions: Iterable[ExceptionRule] | None = None,
        on_retval_policy: ReturnValuePolicy | None = None,
        fallback: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Await ``call`` through ``service``'s circuit and return its result.

        ``call`` is a coroutine function or any callable returning an awaitable (it is
        then called with ``*args, **kwargs`` only if the circuit lets the call
        through), or an awaitable itself: a coroutine (closed unawaited if rejected)
        or a future, whose work has already started. A sync callable's result is
        returned as is. Overrides are resolved at each call.

        The result's type is the awaited type of what ``call`` returns (or of ``call``
        itself when it is an awaitable), so ``r = await breaker.execute_async("svc",
        fetch, 1)`` needs no annotation.
        """
        circuit = self._circuit(service)
        rules = self._rules(
            circuit, failure_reason, ignore_exceptions, on_exceptions, on_retval_policy, fallback
        )
        target: Callable[..., Any] | None = None
        pending: Awaitable[Any] | None = None
        if callable(call):
            target = call
        elif inspect.isawaitable(call):
            pending = call
        else:
            raise InvalidConfigTypeError("call", f"must be a callable or an awaitable, got {call!r}")

        def invoke(*a: Any, **kw: Any) -> Any:
            nonlocal pending
            if pending is not None:
                awaitable, pending = pending, None
                return awaitable
            assert target is not None
            return target(*a, **kw)

        try:
            return await call_async(invoke, circuit, rules, self._listeners, fallback, args, kwargs)
        finally:
            if inspect.iscoroutine(pending):
                # Rejected before it ran: close it rather than leave it never awaited.
                pending.close()

    # -- manual control and inspection -------------------------------------------

    def is_available(self, service: str) -> bool:
        """Would a call to ``service`` go through now? Never takes a half-open trial permit.

        Always True in observe mode (nothing is rejected), so guards that refuse work up
        front let it through too; ``state()`` shows the circuit's real state.
        """
        circuit = self._circuit(service)
        return circuit.is_available() or circuit.policy.mode == "observe"

    async def ais_available(self, service: str) -> bool:
        """``is_available`` for async code: a shared backend's I/O does not block the loop."""
        circuit = self._circuit(service)
        return await circuit.ais_available() or circuit.policy.mode == "observe"

    def open_error(self, service: str) -> CircuitError:
        """The error a call to ``service`` rejected now would raise (for adapters that
        refuse work before calling, such as an HTTP guard or a task that retries)."""
        return self._circuit(service).open_error()

    def record_failure(self, service: str, reason: str | None = "") -> None:
        """Count one failure of ``service`` (for code that does not use ``protect``/``execute``).

        ``reason`` (``None`` for none) is stored as text, at most 500 characters.
        """
        self._circuit(service).on_failure(0, "" if reason is None else _validate.bounded_reason(reason))

    async def arecord_failure(self, service: str, reason: str | None = "") -> None:
        """``record_failure`` for async code: a shared backend's I/O does not block the loop."""
        reason = "" if reason is None else _validate.bounded_reason(reason)
        await self._circuit(service).aon_failure(0, reason)

    def record_success(self, service: str) -> None:
        """Count one success: resets the failure count while closed; closes a half-open circuit."""
        self._circuit(service).on_success(0)

    def last_failure(self, service: str) -> dict[str, Any] | None:
        """``{"reason": str, "ts": epoch seconds}`` of the newest failure, or ``None``."""
        return self._circuit(service).last_failure()

    def state(self, service: str) -> CircuitSnapshot:
        """A snapshot of ``service``'s circuit: state, failures in window, retry_after…"""
        return self._circuit(service).snapshot()

    async def astate(self, service: str) -> CircuitSnapshot:
        """``state`` for async code."""
        return await self._circuit(service).asnapshot()

    def circuits(self) -> dict[str, CircuitHandle]:
        """This process's circuit handles by service (for integrations such as metrics)."""
        return {**self._idle, **self._circuits}

    def services(self) -> list[str]:
        """Every service with a circuit, sorted: those the backend knows (written by any
        process, on a shared store) and this process's own."""
        return sorted(set(self._backend.services()) | set(self._circuits) | set(self._idle))

    def states(self) -> list[CircuitSnapshot]:
        """Snapshots of every circuit the backend knows, sorted by service name."""
        with self._lock:
            self._sweep_if_due()
        return [self.state(name) for name in self.services()]

    def namespace_used(self) -> bool:
        """Whether any breaker ever used this store: on Redis, whether the namespace holds
        any trace of one (even after every circuit's keys expired); locally, whether this
        process has a circuit. Reads without writing and needs no ``initialize``; a store
        that cannot be reached raises ``CircuitBackendError``."""
        used = getattr(self._backend, "namespace_used", None)
        return bool(used()) if callable(used) else bool(self.services())

    def hold_open(self, service: str, seconds: float) -> None:
        """If ``service``'s circuit is open, keep it open at least ``seconds`` more.

        For a downstream that says how long to stay away (an HTTP ``Retry-After``): capped by
        the policy's ``max_open_seconds``, never shortening the open time, fleet-wide on Redis
        (one round trip). Does nothing to a circuit that is not open.
        """
        self._circuit(service).hold_open(_validate.duration("seconds", seconds, allow_zero=True))

    async def ahold_open(self, service: str, seconds: float) -> None:
        """``hold_open`` for async code: a shared backend's I/O does not block the loop."""
        await self._circuit(service).ahold_open(_validate.duration("seconds", seconds, allow_zero=True))

    def force_open(self, service: str, reason: str | None = None) -> None:
        """Hold ``service``'s circuit open until ``reset``: every call is rejected.

        ``reason`` becomes the circuit's last failure; ``None`` (or nothing) stores
        ``"forced open"``. On a shared backend the override holds for every process;
        if the store cannot take it, ``CircuitBackendError`` is raised (an override
        must never look done when it is not).
        """
        self._circuit(service).force_open(
            _validate.bounded_reason(_FORCED_OPEN if reason is None else reason)
        )

    def disable(self, service: str, reason: str | None = None) -> None:
        """Let every call to ``service`` through and record nothing, until ``reset``.

        For a dependency known to be flaky, when rejecting would hurt more than calling.
        Fleet-wide on Redis, like ``force_open``. ``reason`` (``None``: ``"disabled"``)
        shows as the circuit's last failure.
        """
        self._circuit(service).disable(_validate.bounded_reason(_DISABLED if reason is None else reason))

    def reset(self, service: str) -> None:
        """Close ``service``'s circuit and clear its failure count (ends ``force_open`` and ``disable``).

        Raises ``CircuitBackendError`` if a shared store cannot take the change.
        """
        self._circuit(service).reset()

    def add_listener(self, listener: Listener, *, successes: bool = True, calls: bool = True) -> None:
        """Call ``listener(event)`` for each ``CircuitEvent`` (see ``tnm.circuit.events``).

        With ``successes=False`` it gets no event per successful call; with
        ``calls=False`` no event per call at all, only state changes and storage events
        (cheaper: metrics read each circuit's ``counts`` instead).
        """
        self._listeners.add(listener, successes=successes, calls=calls)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (``ValueError`` if it was never added)."""
        self._listeners.remove(listener)


def get_breaker(
    backend: str | Backend | None = None,
    **options: Any,
) -> CircuitBreaker:
    """Build a ``CircuitBreaker`` and ``initialize()`` it: ready to use.

    Each call builds a new breaker; call it once at start-up and share the result.
    """
    breaker = CircuitBreaker(backend, **options)
    breaker.initialize()
    return breaker
