"""The JSON status router and the dashboard say why a circuit opened."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit.testing import ManualClock, trip
from tnm.circuit_fastapi import circuit_dashboard_router, circuit_status_router, install

from .test_dashboard import row


class TestOpenedByViews:
    def test_status_json_and_dashboard_show_opened_by(self, clock: ManualClock) -> None:
        """/health/circuits gives opened_by (None while closed); the dashboard row names the trigger."""
        breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=2))
        trip(breaker, "payments")
        breaker.force_open("ledger", "maintenance")
        breaker.record_success("search")
        app = FastAPI()
        install(app, breaker)
        app.include_router(circuit_status_router(prefix="/health"))
        app.include_router(circuit_dashboard_router())
        with TestClient(app) as client:
            listed = {c["service"]: c["opened_by"] for c in client.get("/health/circuits").json()}
            html = client.get("/circuits/").text
        assert listed == {"ledger": "operator", "payments": "failures", "search": None}
        assert '<span class="opened-by">by failures</span>' in row(html, "payments")
        assert '<span class="opened-by">by operator</span>' in row(html, "ledger")
        assert "opened-by" not in row(html, "search")
