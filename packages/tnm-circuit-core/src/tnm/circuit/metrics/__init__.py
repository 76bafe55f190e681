"""Metrics from the breaker's events: Prometheus and OpenTelemetry.

    from tnm.circuit.metrics import PrometheusMetrics      # pip install 'tnm-circuit-core[prometheus]'
    PrometheusMetrics(breaker)                             # registers on the default registry

    from tnm.circuit.metrics import OpenTelemetryMetrics   # pip install 'tnm-circuit-core[otel]'
    OpenTelemetryMetrics(breaker)                          # on the global meter provider

Both export the same signals, read from one place (``CircuitStats`` and the breaker's
snapshots, which the FastAPI status router and ``tnm-circuit status`` show too): calls
by outcome, current state, transitions, time of the last opening and, for shared
backends, storage health. Each integration is imported only when used, so one extra
is enough for the one you use.
"""

import typing as _typing

from ._stats import OUTCOMES, CircuitStats

if _typing.TYPE_CHECKING:
    from .otel import OpenTelemetryMetrics
    from .prometheus import PrometheusMetrics

__all__ = ["OUTCOMES", "CircuitStats", "OpenTelemetryMetrics", "PrometheusMetrics"]

CircuitStats.__module__ = __name__  # reports this module, not the private one defining it


def __getattr__(name: str) -> _typing.Any:
    if name == "PrometheusMetrics":
        from .prometheus import PrometheusMetrics

        return PrometheusMetrics
    if name == "OpenTelemetryMetrics":
        from .otel import OpenTelemetryMetrics

        return OpenTelemetryMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
