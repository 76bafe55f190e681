"""Prometheus and OpenTelemetry metrics move exactly the right series, on local and Redis."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tnm.circuit import CircuitBreaker, CircuitOpenError, InvalidConfigError, ServicePolicy
from tnm.circuit.metrics import OpenTelemetryMetrics, PrometheusMetrics
from tnm.circuit.testing import ManualClock

POLICY = {"max_failures": 2, "open_seconds": 5, "ignore_exceptions": [KeyError]}


def drive(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """3 successes, 1 ignored, 2 failures (opens), 1 rejected, 1 fallback, then recover."""
    for _ in range(3):
        breaker.execute("pay", lambda: 1)
    with pytest.raises(KeyError):
        breaker.execute("pay", _raise, KeyError())
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.execute("pay", _raise, OSError("down"))
    with pytest.raises(CircuitOpenError):
        breaker.execute("pay", lambda: 1)
    assert breaker.execute("pay", lambda: 1, fallback=lambda: 0) == 0
    clock.advance(5)
    breaker.execute("pay", lambda: 1)  # trial success: closes


def _raise(exc: BaseException) -> None:
    raise exc


EXPECTED_CALLS = {
    "success": 4,
    "failure": 2,
    "ignored": 1,
    "rejected": 1,
    "fallback": 1,
    "would_reject": 0,
    "disabled": 0,
}
EXPECTED_TRANSITIONS = {
    ("closed", "open", "failures"): 1,
    ("open", "half_open", ""): 1,
    ("half_open", "closed", ""): 1,
}
"""(from_state, to_state, trigger): each opening is labelled with why it opened."""


@pytest.fixture(params=["local", "redis"])
def breaker(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[CircuitBreaker]:
    if request.param == "local":
        yield CircuitBreaker(clock=clock, default_policy=ServicePolicy(**POLICY))
        return
    url = request.getfixturevalue("redis_url")
    shared = CircuitBreaker(
        "redis", clock=clock, redis_url=url, namespace="metrics", default_policy=ServicePolicy(**POLICY)
    )
    shared.initialize()
    yield shared
    shared.close()


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class TestPrometheus:
    def test_every_outcome_and_transition(self, breaker: CircuitBreaker, clock: ManualClock) -> None:
        """Each outcome and transition moves exactly its series; state shows the current one."""
        registry = CollectorRegistry()
        PrometheusMetrics(breaker, registry=registry)
        drive(breaker, clock)
        samples = scrape(registry)
        ns = getattr(breaker.backend, "namespace", "")
        for outcome, value in EXPECTED_CALLS.items():
            key = ("tnm_circuit_calls_total", (("namespace", ns), ("outcome", outcome), ("service", "pay")))
            assert samples[key] == value, outcome
        transitions = {
            (dict(labels)["from_state"], dict(labels)["to_state"], dict(labels)["trigger"]): value
            for (name, labels), value in samples.items()
            if name == "tnm_circuit_transitions_total"
        }
        assert transitions == EXPECTED_TRANSITIONS
        states = {
            dict(labels)["state"]: value
            for (name, labels), value in samples.items()
            if name == "tnm_circuit_state"
        }
        assert states == {"closed": 1.0, "open": 0.0, "half_open": 0.0, "forced_open": 0.0, "disabled": 0.0}
        opened = [
            v for (name, _), v in samples.items() if name == "tnm_circuit_last_opened_timestamp_seconds"
        ]
        assert opened == [clock.time() - 5]
        assert samples[("tnm_circuit_storage_degraded", (("namespace", ns),))] == 0.0

    def test_same_numbers_as_the_snapshot(self, breaker: CircuitBreaker, clock: ManualClock) -> None:
        """The exported state is the breaker's snapshot (what the CLI and status router show)."""
        registry = CollectorRegistry()
        PrometheusMetrics(breaker, registry=registry)
        breaker.force_open("pay", "ops")
        samples = scrape(registry)
        current = [
            dict(labels)["state"]
            for (name, labels), v in samples.items()
            if name == "tnm_circuit_state" and v
        ]
        assert current == [breaker.state("pay").state.value] == ["forced_open"]


class TestOpenTelemetry:
    def test_every_outcome_and_transition(self, breaker: CircuitBreaker, clock: ManualClock) -> None:
        """The SDK's in-memory reader sees the same counts under OpenTelemetry names."""
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        OpenTelemetryMetrics(breaker, meter=provider.get_meter("test"))
        drive(breaker, clock)
        data = reader.get_metrics_data()
        points: dict[str, list[Any]] = {}
        units: dict[str, str] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points[metric.name] = list(metric.data.data_points)
                    units[metric.name] = metric.unit
        calls = {p.attributes["outcome"]: p.value for p in points["tnm.circuit.calls"]}
        assert calls == EXPECTED_CALLS
        transitions = {
            (p.attributes["from_state"], p.attributes["to_state"], p.attributes["trigger"]): p.value
            for p in points["tnm.circuit.transitions"]
        }
        assert transitions == EXPECTED_TRANSITIONS
        state = {p.attributes["state"]: p.value for p in points["tnm.circuit.state"]}
        assert state["closed"] == 1
        assert sum(state.values()) == 1
        assert units["tnm.circuit.last_opened"] == "s"
        assert units["tnm.circuit.calls"] == "{call}"
        provider.shutdown()


def test_storage_events_are_exported(redis_url: str, redis_server: Any) -> None:
    """Redis going away shows as storage_degraded 1 and one degradation."""
    breaker = CircuitBreaker("redis", redis_url=redis_url, namespace="m2", socket_timeout=0.2)
    breaker.initialize()
    registry = CollectorRegistry()
    PrometheusMetrics(breaker, registry=registry)
    redis_server.stop()
    breaker.record_failure("svc", "x")
    samples = scrape(registry)
    assert samples[("tnm_circuit_storage_degraded", (("namespace", "m2"),))] == 1.0
    assert samples[("tnm_circuit_storage_degradations_total", (("namespace", "m2"),))] == 1.0
    redis_server.start()
    breaker.close()


@pytest.mark.parametrize(
    ("module", "dependency", "extra"),
    [("prometheus", "prometheus_client", "prometheus"), ("otel", "opentelemetry", "otel")],
)
def test_missing_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, module: str, dependency: str, extra: str
) -> None:
    """Without the extra installed, importing the integration says which extra to install."""
    monkeypatch.setitem(sys.modules, dependency, None)
    monkeypatch.delitem(sys.modules, f"tnm.circuit.metrics.{module}", raising=False)
    with pytest.raises(ImportError, match=rf"tnm-circuit-core\[{extra}\]"):
        importlib.import_module(f"tnm.circuit.metrics.{module}")


def test_metrics_overhead_is_counted_not_evented() -> None:
    """With metrics on, no call builds an event, whatever its outcome: outcomes come from counters."""
    breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=50, ignore_exceptions=[KeyError]))
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(breaker, registry=registry)
    seen: list[Any] = []
    original = metrics.stats._on_event
    metrics.stats._on_event = lambda event: (seen.append(event), original(event))  # type: ignore[method-assign]
    breaker.remove_listener(original)
    breaker.add_listener(metrics.stats._on_event, successes=False, calls=False)
    for _ in range(100):
        breaker.execute("svc", lambda: None)
    for exc in [OSError("down")] * 49 + [KeyError("x")] * 3:
        with pytest.raises((OSError, KeyError)):
            breaker.execute("svc", _raise, exc)
    breaker.force_open("svc")
    for _ in range(4):
        with pytest.raises(CircuitOpenError):
            breaker.execute("svc", lambda: None)
    assert [e.kind.value for e in seen] == ["state_change"]  # the forced opening only
    samples = scrape(registry)

    def calls(outcome: str) -> float:
        return samples[
            ("tnm_circuit_calls_total", (("namespace", ""), ("outcome", outcome), ("service", "svc")))
        ]

    assert (calls("success"), calls("failure"), calls("ignored"), calls("rejected")) == (100, 49, 3, 4)


class TestPrometheusRegistration:
    def test_second_collector_on_one_registry_is_refused(self) -> None:
        """A second PrometheusMetrics on a registry (same or other breaker) raises, naming registry."""
        registry = CollectorRegistry()
        first = CircuitBreaker()
        PrometheusMetrics(first, registry=registry)
        for breaker in (first, CircuitBreaker()):
            with pytest.raises(InvalidConfigError) as info:
                PrometheusMetrics(breaker, registry=registry)
            assert info.value.field == "registry"
        first.record_failure("svc", "x")
        names = [
            line for line in generate_latest(registry).decode().splitlines() if line.startswith("# TYPE")
        ]
        assert len(names) == len(set(names))  # every family once: a scrape Prometheus accepts

    def test_refused_collector_leaves_no_listener(self) -> None:
        """The refused collector detaches from the breaker: it costs the call path nothing."""
        registry = CollectorRegistry()
        breaker = CircuitBreaker()
        PrometheusMetrics(breaker, registry=registry)
        listeners = breaker._listeners.callbacks
        with pytest.raises(InvalidConfigError):
            PrometheusMetrics(breaker, registry=registry)
        assert breaker._listeners.callbacks == listeners

    def test_unregister_then_register_again(self) -> None:
        """After unregister(), a new PrometheusMetrics may take the registry."""
        registry = CollectorRegistry()
        breaker = CircuitBreaker()
        PrometheusMetrics(breaker, registry=registry).unregister()
        PrometheusMetrics(breaker, registry=registry)
