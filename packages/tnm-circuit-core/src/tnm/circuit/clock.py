"""The one source of time for the breaker.

Durations (windows, open times, permit deadlines) use ``monotonic()`` so that a wall
clock step (NTP, DST) never opens or closes a circuit; ``time()`` is used only for the
``ts`` that humans read in ``last_failure``. Tests pass a ``tnm.circuit.testing.ManualClock``
and move time instead of sleeping.
"""

from __future__ import annotations

import time as _time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def time(self) -> float:
        """Wall-clock epoch seconds."""
        ...


class SystemClock:
    """The process clocks: ``time.monotonic`` and ``time.time``."""

    __slots__ = ()

    monotonic = staticmethod(_time.monotonic)
    time = staticmethod(_time.time)

    def __repr__(self) -> str:
        return "SystemClock()"
