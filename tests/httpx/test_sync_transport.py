"""CircuitBreakerTransport with httpx.Client against a real uvicorn upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit.testing import half_open
from tnm.circuit_httpx import CircuitBreakerTransport, CircuitOpenRequestError

from ..upstream import STREAM_BODY, Upstream

MakeBreaker = Callable[..., CircuitBreaker]
SLOW_READ = httpx.Timeout(10.0, read=0.3)  # only against /stall, which never answers


@pytest.fixture
def breaker(make_breaker: MakeBreaker) -> CircuitBreaker:
    return make_breaker(max_failures=3, open_seconds=30)


@pytest.fixture
def client(breaker: CircuitBreaker) -> Iterator[httpx.Client]:
    with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=10.0) as client:
        yield client


class TestOpening:
    def test_failing_upstream_opens_its_own_circuit(
        self, client: httpx.Client, breaker: CircuitBreaker, upstream: Upstream, other_upstream: Upstream
    ) -> None:
        """Three 500s open the upstream's circuit; the next request is refused without reaching it,
        while another upstream still answers."""
        for _ in range(3):
            assert client.get(f"{upstream.url}/status/500").status_code == 500
        with pytest.raises(CircuitOpenRequestError) as caught:
            client.get(f"{upstream.url}/status/500")
        assert upstream.hits() == 3
        assert caught.value.service == upstream.service
        assert caught.value.retry_after == pytest.approx(30)
        assert caught.value.request.url == f"{upstream.url}/status/500"
        assert client.get(f"{other_upstream.url}/ok").text == "ok"
        assert other_upstream.hits() == 1
        assert breaker.state(other_upstream.service).state is CircuitState.CLOSED

    def test_rejection_is_a_transport_error_and_an_open_error(
        self, client: httpx.Client, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """Code catching httpx.TransportError or CircuitOpenError both catch the rejection."""
        breaker.force_open(upstream.service)
        with pytest.raises(httpx.TransportError):
            client.get(f"{upstream.url}/ok")
        with pytest.raises(CircuitOpenError):
            client.get(f"{upstream.url}/ok")
        assert upstream.hits() == 0

    def test_failure_response_is_returned_unchanged(self, client: httpx.Client, upstream: Upstream) -> None:
        """A counted 503 reaches the caller as the server sent it: status, headers and body."""
        response = client.get(f"{upstream.url}/status/503")
        assert (response.status_code, response.headers["retry-after"], response.text) == (
            503,
            "7",
            "status 503",
        )

    def test_failure_reason_names_the_status(
        self, client: httpx.Client, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A counted response is recorded as "HTTP <status> <phrase>", which operators read at a glance."""
        client.get(f"{upstream.url}/status/503")
        last = breaker.last_failure(upstream.service)
        assert last is not None
        assert last["reason"] == "HTTP 503 Service Unavailable"

    def test_refused_connections_count(
        self, client: httpx.Client, breaker: CircuitBreaker, refused_url: str
    ) -> None:
        """Connection refused is a failure: three open the circuit, the fourth is refused by it."""
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                client.get(refused_url)
        with pytest.raises(CircuitOpenRequestError):
            client.get(refused_url)

    def test_timeouts_count(self, breaker: CircuitBreaker, upstream: Upstream) -> None:
        """Read timeouts are failures: after three, the stalling upstream gets no fourth request."""
        with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=SLOW_READ) as client:
            for _ in range(3):
                with pytest.raises(httpx.ReadTimeout):
                    client.get(f"{upstream.url}/stall")
            with pytest.raises(CircuitOpenRequestError):
                client.get(f"{upstream.url}/stall")
        assert upstream.hits("/stall") == 3


class TestWhatDoesNotCount:
    def test_not_found_is_a_success(
        self, client: httpx.Client, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """404s never open the circuit: every one reaches the server."""
        for _ in range(5):
            assert client.get(f"{upstream.url}/status/404").status_code == 404
        assert upstream.hits() == 5
        assert breaker.state(upstream.service).failures == 0

    def test_status_removed_from_failure_statuses(self, breaker: CircuitBreaker, upstream: Upstream) -> None:
        """With failure_statuses={500}, 503s are successes; 500s still count."""
        transport = CircuitBreakerTransport(breaker, failure_statuses={500})
        with httpx.Client(transport=transport, timeout=10.0) as client:
            for _ in range(5):
                assert client.get(f"{upstream.url}/status/503").status_code == 503
            assert breaker.state(upstream.service).failures == 0
            client.get(f"{upstream.url}/status/500")
        assert breaker.state(upstream.service).failures == 1

    def test_policy_ignore_exceptions_apply(self, make_breaker: MakeBreaker, upstream: Upstream) -> None:
        """A service policy that ignores ReadTimeout keeps a stalling upstream's circuit closed."""
        breaker = make_breaker(
            {upstream.service: ServicePolicy(max_failures=1, ignore_exceptions=[httpx.ReadTimeout])}
        )
        with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=SLOW_READ) as client:
            for _ in range(2):
                with pytest.raises(httpx.ReadTimeout):
                    client.get(f"{upstream.url}/stall")
        assert upstream.hits("/stall") == 2
        assert breaker.state(upstream.service).state is CircuitState.CLOSED

    def test_policy_on_exceptions_apply(self, make_breaker: MakeBreaker, refused_url: str) -> None:
        """With on_exceptions=[ReadTimeout], a refused connection is not a failure."""
        breaker = make_breaker(max_failures=1, on_exceptions=[httpx.ReadTimeout])
        with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=10.0) as client:
            for _ in range(2):
                with pytest.raises(httpx.ConnectError):
                    client.get(refused_url)


class TestServiceOption:
    def test_fixed_service_name(self, breaker: CircuitBreaker, upstream: Upstream) -> None:
        """service="orders" puts every request in one circuit named orders."""
        transport = CircuitBreakerTransport(breaker, service="orders")
        with httpx.Client(transport=transport, timeout=10.0) as client:
            client.get(f"{upstream.url}/status/500")
        assert breaker.state("orders").failures == 1
        assert upstream.service not in breaker.circuits()

    def test_service_from_the_request(self, breaker: CircuitBreaker, upstream: Upstream) -> None:
        """A service callable names the circuit from each request."""
        transport = CircuitBreakerTransport(breaker, service=lambda request: request.url.path.split("/")[1])
        with httpx.Client(transport=transport, timeout=10.0) as client:
            client.get(f"{upstream.url}/status/500")
            client.get(f"{upstream.url}/ok")
        assert breaker.state("status").failures == 1
        assert breaker.state("ok").failures == 0


class TestHalfOpen:
    def test_trial_success_closes(
        self, client: httpx.Client, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """After the open time, one trial request goes through and its success closes the circuit."""
        half_open(breaker, upstream.service)
        assert client.get(f"{upstream.url}/ok").status_code == 200
        assert breaker.state(upstream.service).state is CircuitState.CLOSED

    def test_trial_failure_status_reopens(
        self, client: httpx.Client, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A 502 on the trial re-opens the circuit; the response still reaches the caller."""
        half_open(breaker, upstream.service)
        assert client.get(f"{upstream.url}/status/502").status_code == 502
        assert breaker.state(upstream.service).state is CircuitState.OPEN


class TestStreaming:
    def test_outcome_known_at_headers_body_untouched(
        self, client: httpx.Client, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A streamed trial closes the circuit when its headers arrive, before the body is
        sent; the body then streams whole."""
        half_open(breaker, upstream.service)
        with client.stream("GET", f"{upstream.url}/stream") as response:
            assert response.status_code == 200
            assert breaker.state(upstream.service).state is CircuitState.CLOSED
            chunks = response.iter_raw()
            assert next(chunks) == STREAM_BODY[0]
            upstream.gate.set()
            assert b"".join(chunks) == STREAM_BODY[1]


class TestLifecycle:
    def test_closing_the_client_closes_the_inner_transport(self, breaker: CircuitBreaker) -> None:
        """The client's close reaches the wrapped transport; the breaker is left alone."""
        closed: list[str] = []

        class Inner(httpx.BaseTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                return httpx.Response(200)

            def close(self) -> None:
                closed.append("inner")

        with httpx.Client(transport=CircuitBreakerTransport(breaker, transport=Inner())) as client:
            client.get("http://upstream.test/")
        assert closed == ["inner"]

    def test_default_inner_transport_is_httpx(self, breaker: CircuitBreaker) -> None:
        """Without transport=, requests go through httpx's own HTTPTransport."""
        assert isinstance(CircuitBreakerTransport(breaker).transport, httpx.HTTPTransport)


class TestRetryAfter:
    @pytest.mark.parametrize(("cap", "expected"), [(60, 7), (5, 5)])
    def test_retry_after_stretches_the_open_time(
        self, make_breaker: MakeBreaker, upstream: Upstream, cap: float, expected: float
    ) -> None:
        """A counted 503 with Retry-After: 7 that opens the circuit keeps it open 7 s (not the
        policy's 2 s), capped by max_open_seconds; the rejection's retry_after says so."""
        breaker = make_breaker(max_failures=2, open_seconds=2, max_open_seconds=cap)
        with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=10.0) as client:
            for _ in range(2):
                assert client.get(f"{upstream.url}/status/503").status_code == 503
            with pytest.raises(CircuitOpenRequestError) as caught:
                client.get(f"{upstream.url}/ok")
        assert caught.value.retry_after == pytest.approx(expected)
        assert upstream.hits() == 2

    def test_without_retry_after_the_policy_decides(
        self, make_breaker: MakeBreaker, upstream: Upstream
    ) -> None:
        """A 500 carries no Retry-After: the circuit opens for the policy's own time."""
        breaker = make_breaker(max_failures=2, open_seconds=2, max_open_seconds=60)
        with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=10.0) as client:
            for _ in range(2):
                client.get(f"{upstream.url}/status/500")
            with pytest.raises(CircuitOpenRequestError) as caught:
                client.get(f"{upstream.url}/ok")
        assert caught.value.retry_after == pytest.approx(2)


def test_slow_answers_count_as_slow_calls(upstream: Upstream) -> None:
    """With slow_call_seconds in the policy, answers slower than that open the circuit by the slow rate."""
    policy = ServicePolicy(
        max_failures=None,
        slow_call_seconds=0.1,
        slow_call_rate_threshold=0.5,
        minimum_calls=2,
        open_seconds=30,
    )
    breaker = CircuitBreaker(default_policy=policy)  # real time: the transport times the answers
    with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=10.0) as client:
        for _ in range(2):
            assert client.get(f"{upstream.url}/slow").text == "slow"
        with pytest.raises(CircuitOpenRequestError):
            client.get(f"{upstream.url}/ok")
    assert upstream.hits("/ok") == 0
