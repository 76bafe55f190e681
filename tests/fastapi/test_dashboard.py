"""circuit_dashboard_router through TestClient: page, live part, history and operator routes."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.testclient import TestClient

from tnm.circuit import CircuitBreaker, InvalidConfigError, InvalidConfigTypeError, ServicePolicy
from tnm.circuit.testing import ManualClock, trip
from tnm.circuit_fastapi import breaker_lifespan, circuit_dashboard_router, install

from ..redis_server import free_port

ROW = re.compile(r'<tr class="row-[^"]*" data-service="([^"]*)" data-state="([^"]*)">(.*?)</tr>')


def rows(html: str) -> dict[str, str]:
    """Each circuit's row state, by service name."""
    return {unescape(service): state for service, state, _ in ROW.findall(html)}


def row(html: str, service: str) -> str:
    """The HTML of one circuit's row."""
    return next(body for name, _, body in ROW.findall(html) if unescape(name) == service)


def history(html: str) -> str:
    return html.split('<section class="history">', 1)[1].split("</section>", 1)[0]


def admin_only(x_admin: str | None = Header(default=None)) -> None:
    """A stand-in authorization dependency: only requests with ``X-Admin: yes`` may act."""
    if x_admin != "yes":
        raise HTTPException(403, "operators only")


ADMIN = {"X-Admin": "yes"}

basic = HTTPBasic()


def operator_login(credentials: Annotated[HTTPBasicCredentials, Depends(basic)]) -> str:
    """A login-based authorization dependency: HTTP Basic, password "pw"."""
    if credentials.password != "pw":
        raise HTTPException(401, "login")
    return credentials.username


@pytest.fixture
def breaker(clock: ManualClock) -> CircuitBreaker:
    return CircuitBreaker(
        clock=clock,
        default_policy=ServicePolicy(window_seconds=60, max_failures=3, open_seconds=30),
    )


@pytest.fixture
def make_app(breaker: CircuitBreaker) -> Callable[..., FastAPI]:
    def make(**dashboard_options: Any) -> FastAPI:
        app = FastAPI()
        install(app, breaker)
        app.include_router(circuit_dashboard_router(**dashboard_options))
        return app

    return make


class TestPage:
    def test_every_circuit_with_state_failures_and_retry(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """Every known circuit has a row with its state as text and colour class, failures and retry."""
        breaker.record_failure("search", "es down")
        trip(breaker, "payments")
        breaker.force_open("ledger", "maintenance")
        with TestClient(make_app()) as client:
            html = client.get("/circuits/").text
        assert rows(html) == {"ledger": "forced-open", "payments": "open", "search": "closed"}
        payments = row(html, "payments")
        assert '<span class="badge open">open</span>' in payments
        assert '<span class="count">3 / 3</span> in 60 s' in payments
        assert "trial in 30 s" in payments
        assert "2023-11-14 22:13:20 UTC" in payments  # last failure time (ManualClock)
        assert '<span class="count">1 / 3</span>' in row(html, "search")
        assert "held open by an operator" in row(html, "ledger")

    def test_reasons_hidden_unless_exposed(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """Failure reasons appear on the page and in the history only with expose_reasons=True."""
        trip(breaker, "payments", reason="db-internal-7:5432 refused")
        with TestClient(make_app()) as client:
            assert "db-internal-7" not in client.get("/circuits/").text
        with TestClient(make_app(prefix="/ops", expose_reasons=True)) as client:
            html = client.get("/ops/").text
        assert "db-internal-7:5432 refused" in row(html, "payments")

    def test_names_and_reasons_are_escaped(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """A service name or reason holding markup is shown as text, never as HTML."""
        trip(breaker, "<img src=x onerror=alert(1)>", reason="<script>alert(2)</script>")
        with TestClient(make_app(expose_reasons=True, authorize=admin_only)) as client:
            html = client.get("/circuits/").text
        assert "<img" not in html
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
        assert rows(html) == {"<img src=x onerror=alert(1)>": "open"}

    def test_no_circuit_yet(self, make_app: Callable[..., FastAPI]) -> None:
        """A breaker with no circuit shows a sentence instead of an empty table."""
        with TestClient(make_app()) as client:
            html = client.get("/circuits/").text
        assert "No circuits yet" in html
        assert rows(html) == {}

    def test_assets_are_served_by_the_router(self, make_app: Callable[..., FastAPI]) -> None:
        """The stylesheet and script come from the router; the page names no other host."""
        with TestClient(make_app()) as client:
            html = client.get("/circuits/").text
            css = client.get("/circuits/assets/dashboard.css")
            js = client.get("/circuits/assets/dashboard.js")
            missing = client.get("/circuits/assets/other.js")
        assert 'href="assets/dashboard.css"' in html
        assert 'src="assets/dashboard.js"' in html
        assert not re.search(r'(src|href)="(https?:)?//', html)
        assert (css.status_code, css.headers["content-type"]) == (200, "text/css; charset=utf-8")
        assert js.status_code == 200
        assert js.headers["content-type"].startswith("text/javascript")
        assert "fetch(" in js.text
        assert missing.status_code == 404

    def test_works_without_javascript(self, make_app: Callable[..., FastAPI]) -> None:
        """The page is a complete table that the browser reloads when scripts are off; no inline script."""
        with TestClient(make_app(noscript_refresh_seconds=7)) as client:
            response = client.get("/circuits/")
        html = response.text
        assert '<noscript><meta http-equiv="refresh" content="7"></noscript>' in html
        assert "<script>" not in html  # the only script is the external asset
        assert "script-src 'self'" in response.headers["content-security-policy"]

    def test_live_part_and_polling_interval(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """GET {prefix}/live is the changing part alone; the page tells the script how often to poll."""
        trip(breaker, "payments")
        with TestClient(make_app(refresh_seconds=0.25)) as client:
            page = client.get("/circuits/").text
            live = client.get("/circuits/live").text
        assert 'data-refresh-ms="250"' in page
        assert "<html" not in live
        assert rows(live) == {"payments": "open"}

    def test_prefix_without_slash_redirects(self, make_app: Callable[..., FastAPI]) -> None:
        """{prefix} redirects to {prefix}/, where the page's relative links resolve."""
        with TestClient(make_app(prefix="/ops/circuits")) as client:
            response = client.get("/ops/circuits", params={"a": "1"}, follow_redirects=False)
            followed = client.get("/ops/circuits")
        assert response.status_code == 307
        assert response.headers["location"] == "circuits/?a=1"  # relative: proxies may rewrite paths
        assert followed.url.path == "/ops/circuits/"
        assert "<h1>Circuits</h1>" in followed.text

    def test_empty_prefix_under_include_prefix(self, breaker: CircuitBreaker) -> None:
        """With prefix="" the page and its assets live wherever include_router puts them."""
        app = FastAPI()
        install(app, breaker)
        app.include_router(circuit_dashboard_router(prefix=""), prefix="/ops")
        breaker.state("payments")
        with TestClient(app) as client:
            assert rows(client.get("/ops/").text) == {"payments": "closed"}
            assert client.get("/ops/assets/dashboard.css").status_code == 200

    def test_reads_use_the_async_path(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """The page reads circuits with astate, never the blocking state()/states()."""
        trip(breaker, "payments")
        blocking: list[str] = []
        breaker.state = lambda service: blocking.append(service)  # type: ignore[method-assign,assignment,return-value]
        breaker.states = lambda: blocking.append("*")  # type: ignore[method-assign,assignment,return-value]
        with TestClient(make_app()) as client:
            assert rows(client.get("/circuits/live").text) == {"payments": "open"}
        assert blocking == []


class TestStoreHealth:
    def test_local_store(self, make_app: Callable[..., FastAPI]) -> None:
        """The local backend is shown as per-process state."""
        with TestClient(make_app()) as client:
            assert "Store: in this process" in client.get("/circuits/").text

    def test_unreachable_store(self) -> None:
        """A Redis store that cannot be reached is shown as unreachable."""
        url = f"redis://127.0.0.1:{free_port()}/0"
        breaker = CircuitBreaker("redis", redis_url=url, socket_timeout=0.2)
        app = FastAPI()
        install(app, breaker, start_degraded=True)
        app.include_router(circuit_dashboard_router())
        with TestClient(app) as client:
            html = client.get("/circuits/").text
        assert '<p class="store degraded">' in html
        assert "unreachable" in html

    def test_reachable_store(self, redis_url: str) -> None:
        """A reachable Redis store is shown as shared and reachable."""
        breaker = CircuitBreaker("redis", redis_url=redis_url, namespace="dash-health")
        app = FastAPI()
        install(app, breaker)
        app.include_router(circuit_dashboard_router())
        with TestClient(app) as client:
            assert "Store: redis, reachable" in client.get("/circuits/").text


class TestHistory:
    def test_listener_records_changes_before_the_first_request(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """With install(), the router listens from startup: a change before any page view is listed."""
        with TestClient(make_app(expose_reasons=True)) as client:
            trip(breaker, "payments", reason="refused")
            breaker.reset("payments")
            html = history(client.get("/circuits/").text)
        assert html.index('&rarr; <span class="badge closed">') < html.index(
            '&rarr; <span class="badge open">'
        )
        assert "refused" in html
        assert "noticed when the page read it" not in html

    def test_first_request_attaches_without_install(self, breaker: CircuitBreaker) -> None:
        """With breaker_lifespan alone, the history starts at the first request."""
        app = FastAPI(lifespan=breaker_lifespan(breaker))
        app.include_router(circuit_dashboard_router())
        with TestClient(app) as client:
            assert "No state change" in client.get("/circuits/").text
            trip(breaker, "payments")
            assert '<span class="service">payments</span>' in history(client.get("/circuits/").text)

    def test_bounded(self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]) -> None:
        """Only the newest history_size changes are kept."""
        with TestClient(make_app(history_size=3)) as client:
            for _ in range(4):
                breaker.force_open("payments")
                breaker.reset("payments")
            assert history(client.get("/circuits/").text).count("<li>") == 3

    def test_changes_made_elsewhere_are_seen(self, make_redis_breaker: Callable[..., CircuitBreaker]) -> None:
        """A change made by another process (through Redis) is listed once the page has read it."""
        served = make_redis_breaker(max_failures=2, initialize=False)
        other = make_redis_breaker(max_failures=2)
        app = FastAPI()
        install(app, served)
        app.include_router(circuit_dashboard_router())
        with TestClient(app) as client:
            served.state("payments")
            assert rows(client.get("/circuits/").text) == {"payments": "closed"}
            trip(other, "payments")
            html = client.get("/circuits/").text
        assert rows(html) == {"payments": "open"}
        assert "noticed when the page read it" in history(html)

    def test_store_outage_is_listed(self, breaker: CircuitBreaker) -> None:
        """Losing and regaining the shared store are history lines."""
        url = f"redis://127.0.0.1:{free_port()}/0"
        degraded = CircuitBreaker("redis", redis_url=url, socket_timeout=0.2)
        app = FastAPI()
        install(app, degraded, start_degraded=True)
        app.include_router(circuit_dashboard_router())
        with TestClient(app) as client:
            degraded.state("payments")  # the first failed read marks the store unreachable
            assert "store unreachable" in history(client.get("/circuits/").text)


class TestOperator:
    def test_read_only_by_default(self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]) -> None:
        """Without authorize, no button is rendered and the operator routes do not exist."""
        trip(breaker, "payments")
        app = make_app()
        with TestClient(app) as client:
            html = client.get("/circuits/").text
            assert "<form" not in html
            assert "<button" not in html
            assert client.post("/circuits/open", params={"service": "payments"}).status_code == 404
            assert client.post("/circuits/disable", params={"service": "payments"}).status_code == 404
            assert client.post("/circuits/reset", params={"service": "payments"}).status_code == 404
        assert breaker.state("payments").state.value == "open"

    def test_buttons_with_authorize(self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]) -> None:
        """With authorize, an operator sees Open and (once not clean) Reset forms posting to the router."""
        trip(breaker, "pay ments")
        breaker.state("search")
        with TestClient(make_app(authorize=admin_only)) as client:
            html = client.get("/circuits/", headers=ADMIN).text
        assert 'action="open?service=pay%20ments"' in row(html, "pay ments")
        assert 'action="reset?service=pay%20ments"' in row(html, "pay ments")
        assert 'action="reset?service=search"' not in row(html, "search")  # nothing to reset

    @pytest.mark.parametrize("path", ["/circuits/", "/circuits/live"])
    def test_forms_only_for_who_passes_authorize(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI], path: str
    ) -> None:
        """A visitor authorize refuses gets the read-only page (200, no form); an operator gets the forms."""
        trip(breaker, "payments")
        with TestClient(make_app(authorize=admin_only)) as client:
            anonymous = client.get(path)
            operator = client.get(path, headers=ADMIN)
        assert anonymous.status_code == 200
        assert "<form" not in anonymous.text
        assert "<button" not in anonymous.text
        assert rows(anonymous.text) == {"payments": "open"}
        assert 'action="disable?service=payments"' in operator.text

    def test_forms_follow_a_security_scheme(self, breaker: CircuitBreaker) -> None:
        """With an HTTP Basic authorize (a security sub-dependency that answers 401), only a
        visitor with the right credentials sees forms; the page itself stays open to all."""
        breaker.state("payments")
        app = FastAPI()
        install(app, breaker)
        app.include_router(circuit_dashboard_router(authorize=operator_login))
        with TestClient(app) as client:
            pages = {
                who: client.get("/circuits/", auth=auth)
                for who, auth in (("anonymous", None), ("wrong", ("ops", "no")), ("operator", ("ops", "pw")))
            }
            assert client.post("/circuits/open", params={"service": "payments"}).status_code == 401
        assert {who: page.status_code for who, page in pages.items()} == dict.fromkeys(pages, 200)
        assert "<form" not in pages["anonymous"].text
        assert "<form" not in pages["wrong"].text
        assert 'action="open?service=payments"' in pages["operator"].text

    def test_routes_run_authorize(self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]) -> None:
        """A caller the dependency refuses cannot open or reset, and learns nothing about names."""
        trip(breaker, "payments")
        with TestClient(make_app(authorize=admin_only)) as client:
            assert client.post("/circuits/reset", params={"service": "payments"}).status_code == 403
            assert client.post("/circuits/open", params={"service": "nope"}).status_code == 403
        assert breaker.state("payments").state.value == "open"

    def test_open_and_reset(self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]) -> None:
        """An authorized form post acts and redirects to the page; the script's post gets JSON."""
        breaker.state("payments")
        with TestClient(make_app(authorize=Depends(admin_only))) as client:
            opened = client.post(
                "/circuits/open", params={"service": "payments"}, headers=ADMIN, follow_redirects=False
            )
            assert (opened.status_code, opened.headers["location"]) == (303, "./")
            assert breaker.state("payments").state.value == "forced_open"
            reset = client.post(
                "/circuits/reset",
                params={"service": "payments"},
                headers={**ADMIN, "Accept": "application/json"},
            )
            assert reset.json()["state"] == "closed"
            assert client.post("/circuits/open", params={"service": "nope"}, headers=ADMIN).status_code == 404
            disabled = client.post(
                "/circuits/disable",
                params={"service": "payments"},
                headers={**ADMIN, "Accept": "application/json"},
            )
            assert disabled.json()["state"] == "disabled"
            assert 'action="disable?service=payments"' not in client.get("/circuits/", headers=ADMIN).text

    def test_cross_site_posts_refused(
        self, breaker: CircuitBreaker, make_app: Callable[..., FastAPI]
    ) -> None:
        """A form posted from another site is refused even with the operator's credentials."""
        breaker.state("payments")
        with TestClient(make_app(authorize=admin_only)) as client:
            for headers in (
                {"Sec-Fetch-Site": "cross-site"},
                {"Sec-Fetch-Site": "same-site"},
                {"Origin": "https://evil.example"},
                {"Origin": "null"},
            ):
                response = client.post(
                    "/circuits/open", params={"service": "payments"}, headers={**ADMIN, **headers}
                )
                assert response.status_code == 403, headers
            same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
            response = client.post(
                "/circuits/open",
                params={"service": "payments"},
                headers={**ADMIN, **same},
                follow_redirects=False,
            )
            assert response.status_code == 303
        assert breaker.state("payments").state.value == "forced_open"


class TestOptions:
    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("refresh_seconds", 0),
            ("noscript_refresh_seconds", 0),
            ("noscript_refresh_seconds", 1.5),
            ("history_size", 0),
        ],
    )
    def test_bad_values_rejected(self, option: str, value: Any) -> None:
        """Bad option values raise InvalidConfigError naming the option."""
        with pytest.raises(InvalidConfigError) as info:
            circuit_dashboard_router(**{option: value})
        assert info.value.field == option

    @pytest.mark.parametrize("value", ["admin", 42, True])
    def test_authorize_that_is_not_a_dependency(self, value: Any) -> None:
        """authorize= that is not a callable or Depends(...) is refused at the call, naming authorize."""
        with pytest.raises(InvalidConfigTypeError) as info:
            circuit_dashboard_router(authorize=value)
        assert info.value.field == "authorize"
