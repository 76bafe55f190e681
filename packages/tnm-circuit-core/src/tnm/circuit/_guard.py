"""``breaker.guard(service)``: a block of code as one protected call (``with`` and ``async with``).

Entering admits the block as ``execute`` admits a call (``CircuitOpenError`` when rejected,
a half-open trial permit taken); leaving records it: an exception under the same rules as
``protect``, a clean exit as a success, a cancellation or ``KeyboardInterrupt`` as no
outcome (the permit goes back). The block's exception always propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from ._call import aadmit, admit, afail, afinish, finish, is_slow, record_exception, release
from ._rules import CallRules
from .backends.base import CircuitHandle
from .events import ListenerList

__all__ = ["Guard"]

_UNUSED = -2
"""``token`` of a guard not entered yet (or already left)."""


class Guard:
    """One block's pass through a circuit; reusable one block at a time (not nested)."""

    __slots__ = ("_circuit", "_listeners", "_resolve", "_rules", "_start", "_token")

    def __init__(
        self, resolve: Callable[[], CircuitHandle], rules: CallRules, listeners: ListenerList
    ) -> None:
        self._resolve = resolve
        """The service's circuit, looked up at each entry (a kept guard never holds a circuit
        the breaker dropped as idle)."""
        self._circuit = resolve()
        self._rules = rules
        self._listeners = listeners
        self._token = _UNUSED
        self._start: float | None = None

    def __repr__(self) -> str:
        return f"<Guard {self._circuit.service!r}>"

    def _started(self, token: int) -> None:
        self._token = token
        self._start = None if self._circuit.slow_after is None else self._circuit.monotonic()

    def _taken(self) -> int:
        token, self._token = self._token, _UNUSED
        return token

    def __enter__(self) -> None:
        self._circuit = circuit = self._resolve()
        self._started(admit(circuit, self._rules, self._listeners, None))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._taken()
        if token < 0:  # observe mode ran a block the circuit would have rejected: nothing to record
            return
        circuit, rules = self._circuit, self._rules
        slow = is_slow(circuit, rules, self._start)
        if exc is None:
            finish(circuit, rules, self._listeners, token, None, slow, judge=False)
        elif isinstance(exc, Exception):
            record_exception(circuit, rules, token, exc, slow)
        elif token:
            release(circuit, token)

    async def __aenter__(self) -> None:
        self._circuit = circuit = self._resolve()
        self._started(await aadmit(circuit, self._rules, self._listeners, None))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._taken()
        if token < 0:
            return
        circuit, rules = self._circuit, self._rules
        slow = is_slow(circuit, rules, self._start)
        if exc is None:
            await afinish(circuit, rules, self._listeners, token, None, slow, judge=False)
        elif isinstance(exc, Exception):
            await afail(circuit, rules, token, exc, slow)
        elif token:
            release(circuit, token)
