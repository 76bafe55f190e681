"""The JSON status router, the dashboard and the metrics show failing processes and an isolated process."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy
from tnm.circuit.metrics.prometheus import PrometheusMetrics
from tnm.circuit_fastapi import circuit_dashboard_router, circuit_status_router, install

from .test_dashboard import row

POLICY = ServicePolicy(max_failures=3, min_failing_processes=2, window_seconds=60)


def _boom() -> None:
    raise OSError("down")


class TestIsolatedProcessViews:
    def test_status_dashboard_and_metrics_show_the_isolation(self, redis_url: str) -> None:
        """One process isolated (k=2): opened_by process and failing processes 1 in JSON, HTML and metrics."""
        sick = CircuitBreaker("redis", redis_url=redis_url, namespace="views", default_policy=POLICY)
        other = CircuitBreaker("redis", redis_url=redis_url, namespace="views", default_policy=POLICY)
        registry = CollectorRegistry()
        PrometheusMetrics(sick, registry)
        try:
            other.execute("payments", lambda: None)  # another process calls the service
            for _ in range(3):
                with pytest.raises(OSError):
                    sick.execute("payments", _boom)
            with pytest.raises(CircuitOpenError):
                sick.execute("payments", _boom)
            app = FastAPI()
            install(app, sick)
            app.include_router(circuit_status_router(prefix="/health"))
            app.include_router(circuit_dashboard_router())
            with TestClient(app) as client:
                listed = client.get("/health/circuits").json()
                html = client.get("/circuits/").text
            exposed = generate_latest(registry).decode()
            assert other.state("payments").state.value == "closed"
        finally:
            sick.close()
            other.close()
        (payments,) = listed
        assert (payments["state"], payments["opened_by"], payments["failing_processes"]) == (
            "open",
            "process",
            1,
        )
        assert '<span class="opened-by">by process</span>' in row(html, "payments")
        assert "failing processes: 1" in row(html, "payments")
        assert 'tnm_circuit_failing_processes{namespace="views",service="payments"} 1.0' in exposed
        assert 'to_state="open",trigger="process"' in exposed
