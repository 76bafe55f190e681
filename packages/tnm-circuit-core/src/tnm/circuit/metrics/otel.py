"""OpenTelemetry metrics for a breaker (``pip install 'tnm-circuit-core[otel]'``)."""

from __future__ import annotations

from collections.abc import Iterable

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError(
        "tnm.circuit.metrics.OpenTelemetryMetrics needs the OpenTelemetry API: "
        "pip install 'tnm-circuit-core[otel]'"
    ) from exc

from ..breaker import CircuitBreaker
from ..state import CircuitState
from ._stats import CircuitStats

__all__ = ["OpenTelemetryMetrics"]


class OpenTelemetryMetrics:
    """Observable instruments for ``breaker`` on ``meter`` (default: the global provider's).

    Instruments (attributes ``service`` and ``namespace`` on each point):

    - ``tnm.circuit.calls`` (counter, ``{call}``, attribute ``outcome``)
    - ``tnm.circuit.state`` (gauge: 1 for the current ``state``, 0 for the others)
    - ``tnm.circuit.transitions`` (counter, ``{transition}``, ``from_state``/``to_state``/``trigger``:
      why an opening opened, ``""`` on other transitions)
    - ``tnm.circuit.last_opened`` (gauge, ``s``, epoch seconds)
    - ``tnm.circuit.failing_processes`` (gauge, ``{process}``: distinct processes that failed
      inside the window; Redis backend only)
    - ``tnm.circuit.storage.degraded`` (gauge) and ``tnm.circuit.storage.degradations``
      (counter, ``{event}``)

    Values are read when the SDK collects, so the call path only bumps counters.
    """

    def __init__(self, breaker: CircuitBreaker, meter: Meter | None = None) -> None:
        self.stats = CircuitStats(breaker)
        meter = meter if meter is not None else metrics.get_meter("tnm.circuit")
        self.meter = meter
        meter.create_observable_counter(
            "tnm.circuit.calls", [self._calls], unit="{call}", description="Protected calls by outcome."
        )
        meter.create_observable_gauge(
            "tnm.circuit.state", [self._state], unit="1", description="1 for the circuit's current state."
        )
        meter.create_observable_counter(
            "tnm.circuit.transitions",
            [self._transitions],
            unit="{transition}",
            description="Circuit state changes made by this process.",
        )
        meter.create_observable_gauge(
            "tnm.circuit.last_opened",
            [self._last_opened],
            unit="s",
            description="When this process last saw the circuit open (epoch seconds).",
        )
        meter.create_observable_gauge(
            "tnm.circuit.failing_processes",
            [self._failing],
            unit="{process}",
            description="Distinct processes that failed inside the window (Redis backend).",
        )
        meter.create_observable_gauge(
            "tnm.circuit.storage.degraded",
            [self._degraded],
            unit="1",
            description="1 while the shared state store is unreachable.",
        )
        meter.create_observable_counter(
            "tnm.circuit.storage.degradations",
            [self._degradations],
            unit="{event}",
            description="Times the shared state store became unreachable.",
        )

    def _attrs(self, service: str, **extra: str) -> dict[str, str]:
        return {"service": service, "namespace": self.stats.namespace, **extra}

    def _calls(self, options: CallbackOptions) -> Iterable[Observation]:
        for service in self.stats.services():
            for outcome, value in service.calls.items():
                yield Observation(value, self._attrs(service.service, outcome=outcome))

    def _state(self, options: CallbackOptions) -> Iterable[Observation]:
        for snapshot in self.stats.snapshots():
            for state in CircuitState:
                value = 1 if snapshot.state is state else 0
                yield Observation(value, self._attrs(snapshot.service, state=state.value))

    def _failing(self, options: CallbackOptions) -> Iterable[Observation]:
        for snapshot in self.stats.snapshots():
            if snapshot.failing_processes is not None:
                yield Observation(snapshot.failing_processes, self._attrs(snapshot.service))

    def _transitions(self, options: CallbackOptions) -> Iterable[Observation]:
        for service in self.stats.services():
            for (src, dst, trigger), value in (service.triggered or {}).items():
                yield Observation(
                    value, self._attrs(service.service, from_state=src, to_state=dst, trigger=trigger)
                )

    def _last_opened(self, options: CallbackOptions) -> Iterable[Observation]:
        for service in self.stats.services():
            if service.last_opened is not None:
                yield Observation(service.last_opened, self._attrs(service.service))

    def _degraded(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(1 if self.stats.storage_degraded else 0, {"namespace": self.stats.namespace})

    def _degradations(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.stats.storage_degradations.value, {"namespace": self.stats.namespace})
