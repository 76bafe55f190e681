"""The dashboard's policy column and the operator's policy form, through TestClient and a real Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit.testing import ManualClock
from tnm.circuit_fastapi import circuit_dashboard_router, install

from ..redis.helpers import wait_for
from .test_dashboard import row

ADMIN = {"X-Admin": "yes", "Sec-Fetch-Site": "same-origin"}


def admin_only(x_admin: str | None = Header(default=None)) -> None:
    """Only requests with ``X-Admin: yes`` may act."""
    if x_admin != "yes":
        raise HTTPException(403, "operators only")


@pytest.fixture
def breaker(clock: ManualClock) -> CircuitBreaker:
    breaker = CircuitBreaker(
        clock=clock, default_policy=ServicePolicy(window_seconds=60, max_failures=3, open_seconds=30)
    )
    breaker.execute("payments", lambda: None)
    return breaker


@pytest.fixture
def make_app(breaker: CircuitBreaker) -> Callable[..., FastAPI]:
    def make(**dashboard_options: Any) -> FastAPI:
        app = FastAPI()
        install(app, breaker)
        app.include_router(circuit_dashboard_router(**dashboard_options))
        return app

    return make


class TestPolicyColumn:
    def test_row_shows_thresholds_and_source(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """Each row shows the thresholds in force and says where they come from."""
        with TestClient(make_app()) as client:
            html = row(client.get("/circuits/").text, "payments")
            assert "3 failures / 60 s" in html
            assert "from code" in html
            assert "policy-form" not in html  # read-only: no form
            breaker.set_policy("payments", ServicePolicy(max_failures=7))
            html = row(client.get("/circuits/").text, "payments")
            assert "7 failures / 60 s" in html
            assert "changed in this process" in html


class TestPolicyForm:
    def test_operator_changes_a_field(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """A plain form post changes only the fields that differ, and redirects back to the page."""
        with TestClient(make_app(authorize=admin_only)) as client:
            page = row(client.get("/circuits/", headers=ADMIN).text, "payments")
            assert 'action="policy?service=payments"' in page
            response = client.post(
                "/circuits/policy?service=payments",
                data={"max_failures": "2", "window_seconds": "60", "open_seconds": "30", "mode": "enforce"},
                headers=ADMIN,
                follow_redirects=False,
            )
            assert response.status_code == 303
        policy = breaker.policy_for("payments")
        assert (policy.max_failures, policy.window_seconds, policy.open_seconds) == (2, 60, 30)
        assert breaker.policy_source("payments") == "process"

    def test_the_form_edits_every_field_an_override_may_set(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """Each field ``set_policy`` accepts has an input, and a post of it is applied."""
        from tnm.circuit._policy_overrides import PATCHABLE_FIELDS

        with TestClient(make_app(authorize=admin_only)) as client:
            page = row(client.get("/circuits/", headers=ADMIN).text, "payments")
            assert {name for name in PATCHABLE_FIELDS if f'name="{name}"' not in page} == set()
            client.post(
                "/circuits/policy?service=payments",
                data={"backoff_multiplier": "3", "max_open_seconds": "900", "trial_timeout_seconds": "5"},
                headers=ADMIN,
                follow_redirects=False,
            )
        policy = breaker.policy_for("payments")
        assert (policy.backoff_multiplier, policy.max_open_seconds, policy.trial_timeout_seconds) == (
            3,
            900,
            5,
        )

    @pytest.mark.parametrize(
        ("field", "value"),
        [("max_failures", "0"), ("failure_rate_threshold", "2"), ("open_seconds", "soon"), ("mode", "off")],
    )
    def test_invalid_value_refused_naming_the_field(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI], field: str, value: str
    ) -> None:
        """An invalid value answers 400 naming the field, and nothing is applied."""
        with TestClient(make_app(authorize=admin_only)) as client:
            response = client.post(
                "/circuits/policy?service=payments",
                data={field: value},
                headers={**ADMIN, "Accept": "application/json"},
            )
        assert response.status_code == 400
        assert response.json()["detail"].startswith(f"{field}:")
        assert breaker.policy_source("payments") == "code"

    def test_refused_without_authorization_or_cross_site(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """The form is refused to a caller authorize refuses, and to a post from another site."""
        with TestClient(make_app(authorize=admin_only)) as client:
            assert (
                client.post("/circuits/policy?service=payments", data={"max_failures": "1"}).status_code
                == 403
            )
            cross = {"X-Admin": "yes", "Sec-Fetch-Site": "cross-site"}
            response = client.post(
                "/circuits/policy?service=payments", data={"max_failures": "1"}, headers=cross
            )
            assert response.status_code == 403
        assert breaker.policy_source("payments") == "code"

    def test_clear_override(self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]) -> None:
        """Clear override returns the service to its code's policy; the button shows only then."""
        breaker.set_policy("payments", ServicePolicy(max_failures=9))
        with TestClient(make_app(authorize=admin_only)) as client:
            assert 'action="clear-policy?service=payments"' in row(
                client.get("/circuits/", headers=ADMIN).text, "payments"
            )
            response = client.post(
                "/circuits/clear-policy?service=payments", headers=ADMIN, follow_redirects=False
            )
            assert response.status_code == 303
            assert "clear-policy" not in row(client.get("/circuits/", headers=ADMIN).text, "payments")
        assert breaker.policy_source("payments") == "code"


class TestFleetFromTheDashboard:
    def test_on_redis_the_form_changes_the_fleet(self, redis_url: str) -> None:
        """On Redis the form stores a fleet override, which another process applies."""

        def make(refresh: float = 0.1) -> CircuitBreaker:
            breaker = CircuitBreaker(
                "redis",
                redis_url=redis_url,
                namespace="dash-policy",
                default_policy=ServicePolicy(max_failures=3),
                refresh_interval=refresh,
            )
            breaker.initialize()
            return breaker

        dash, other = make(), make()
        try:
            dash.execute("payments", lambda: None)
            app = FastAPI()
            install(app, dash)
            app.include_router(circuit_dashboard_router(authorize=admin_only))
            with TestClient(app) as client:
                response = client.post(
                    "/circuits/policy?service=payments",
                    data={"max_failures": "2"},
                    headers=ADMIN,
                    follow_redirects=False,
                )
                assert response.status_code == 303
                assert "changed for the fleet" in row(
                    client.get("/circuits/", headers=ADMIN).text, "payments"
                )
            assert dash.policy_overrides() == {"payments": {"max_failures": 2}}
            assert wait_for(lambda: other.policy_for("payments").max_failures == 2, 5)
        finally:
            dash.close()
            other.close()
