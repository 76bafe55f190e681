"""Prometheus metrics for a breaker (``pip install 'tnm-circuit-core[prometheus]'``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError(
        "tnm.circuit.metrics.PrometheusMetrics needs prometheus-client: "
        "pip install 'tnm-circuit-core[prometheus]'"
    ) from exc

from ..breaker import CircuitBreaker
from ..exceptions import InvalidConfigError
from ..state import CircuitState
from ._stats import CircuitStats

__all__ = ["PrometheusMetrics"]

_STATES = [s.value for s in CircuitState]


class PrometheusMetrics:
    """Registers a collector for ``breaker`` on ``registry`` (default: the global one).

    Series, each labelled ``service`` and ``namespace``:

    - ``tnm_circuit_calls_total{outcome}``: success, failure, ignored, rejected, fallback,
      would_reject (observe mode), disabled (a call through a disabled circuit)
    - ``tnm_circuit_state{state}``: 1 for the circuit's current state, 0 for the others
    - ``tnm_circuit_transitions_total{from_state,to_state,trigger}``: ``trigger`` says why an
      opening opened (``failures``, ``failure_rate``, ``slow_call_rate``, ``trial_failed``,
      ``operator``, ``open_on``, ``process``: this process isolated itself), ``""`` on other
      transitions
    - ``tnm_circuit_failing_processes``: distinct processes that failed inside the window
      (Redis backend only)
    - ``tnm_circuit_last_opened_timestamp_seconds``
    - ``tnm_circuit_storage_degraded`` and ``tnm_circuit_storage_degradations_total``
      (namespace only): the shared store's health.

    One ``PrometheusMetrics`` per registry: a second one (for the same breaker or
    another) would publish every series twice, which Prometheus rejects, so it raises
    ``InvalidConfigError`` (field ``registry``). Give each breaker its own registry, or
    ``unregister()`` the first.
    """

    def __init__(self, breaker: CircuitBreaker, registry: CollectorRegistry | None = None) -> None:
        self.stats = CircuitStats(breaker)
        self.registry = REGISTRY if registry is None else registry
        try:
            self.registry.register(self)
        except ValueError:
            self.stats.close()
            raise InvalidConfigError(
                "registry",
                "already publishes tnm_circuit_* series (another PrometheusMetrics on it?): "
                "use one PrometheusMetrics per registry, or unregister() the first",
            ) from None

    def unregister(self) -> None:
        self.registry.unregister(self)
        self.stats.close()

    def describe(self) -> list[Any]:
        # Names only, so that the registry refuses a second collector of the same series;
        # describing by collecting would read Redis at registration.
        return list(_families())

    def collect(self) -> Iterator[Metric]:
        ns = self.stats.namespace
        calls, transitions, last_opened, state, degraded, degradations, failing = _families()
        for service in self.stats.services():
            for outcome, value in service.calls.items():
                calls.add_metric([service.service, ns, outcome], value)
            for (src, dst, trigger), value in (service.triggered or {}).items():
                transitions.add_metric([service.service, ns, src, dst, trigger], value)
            if service.last_opened is not None:
                last_opened.add_metric([service.service, ns], service.last_opened)
        for snapshot in self.stats.snapshots():
            for name in _STATES:
                state.add_metric([snapshot.service, ns, name], 1.0 if snapshot.state.value == name else 0.0)
            if snapshot.failing_processes is not None:
                failing.add_metric([snapshot.service, ns], float(snapshot.failing_processes))
        degraded.add_metric([ns], 1.0 if self.stats.storage_degraded else 0.0)
        degradations.add_metric([ns], self.stats.storage_degradations.value)
        yield from (calls, state, transitions, last_opened, degraded, degradations, failing)


def _families() -> tuple[
    CounterMetricFamily,
    CounterMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    CounterMetricFamily,
    GaugeMetricFamily,
]:
    """Empty families: calls, transitions, last_opened, state, degraded, degradations, failing."""
    calls = CounterMetricFamily(
        "tnm_circuit_calls", "Protected calls by outcome.", labels=["service", "namespace", "outcome"]
    )
    transitions = CounterMetricFamily(
        "tnm_circuit_transitions",
        "Circuit state changes made by this process.",
        labels=["service", "namespace", "from_state", "to_state", "trigger"],
    )
    last_opened = GaugeMetricFamily(
        "tnm_circuit_last_opened_timestamp_seconds",
        "When this process last saw the circuit open (epoch seconds).",
        labels=["service", "namespace"],
    )
    state = GaugeMetricFamily(
        "tnm_circuit_state",
        "1 for the circuit's current state.",
        labels=["service", "namespace", "state"],
    )
    degraded = GaugeMetricFamily(
        "tnm_circuit_storage_degraded",
        "1 while the shared state store is unreachable.",
        labels=["namespace"],
    )
    degradations = CounterMetricFamily(
        "tnm_circuit_storage_degradations",
        "Times the shared state store became unreachable.",
        labels=["namespace"],
    )
    failing = GaugeMetricFamily(
        "tnm_circuit_failing_processes",
        "Distinct processes that failed inside the window (Redis backend).",
        labels=["service", "namespace"],
    )
    return calls, transitions, last_opened, state, degraded, degradations, failing
