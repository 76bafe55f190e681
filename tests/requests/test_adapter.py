"""CircuitBreakerAdapter on a requests.Session against a real uvicorn upstream."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
import requests

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock, half_open
from tnm.circuit_requests import CircuitOpenRequestError

from ..upstream import STREAM_BODY, Upstream

MakeBreaker = Callable[..., CircuitBreaker]
MakeSession = Callable[..., requests.Session]
TIMEOUT = 10.0


@pytest.fixture
def breaker(make_breaker: MakeBreaker) -> CircuitBreaker:
    return make_breaker(max_failures=3, open_seconds=30)


@pytest.fixture
def session(breaker: CircuitBreaker, make_session: MakeSession) -> requests.Session:
    return make_session(breaker)


class TestOpening:
    def test_failing_upstream_opens_its_own_circuit(
        self,
        session: requests.Session,
        breaker: CircuitBreaker,
        upstream: Upstream,
        other_upstream: Upstream,
    ) -> None:
        """Three 500s open the upstream's circuit; the next request is refused without reaching it,
        while another upstream still answers."""
        for _ in range(3):
            assert session.get(f"{upstream.url}/status/500", timeout=TIMEOUT).status_code == 500
        with pytest.raises(CircuitOpenRequestError) as caught:
            session.get(f"{upstream.url}/status/500", timeout=TIMEOUT)
        assert upstream.hits() == 3
        assert caught.value.service == upstream.service
        assert caught.value.retry_after == pytest.approx(30)
        assert caught.value.request is not None
        assert caught.value.request.url == f"{upstream.url}/status/500"
        assert caught.value.response is None
        assert session.get(f"{other_upstream.url}/ok", timeout=TIMEOUT).text == "ok"
        assert breaker.state(other_upstream.service).state is CircuitState.CLOSED

    def test_rejection_is_a_connection_error_and_an_open_error(
        self, session: requests.Session, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """Code catching requests.ConnectionError, RequestException or CircuitOpenError catches the
        rejection; its message names the circuit, and it pickles with its fields."""
        breaker.force_open(upstream.service)
        for kind in (requests.ConnectionError, requests.RequestException, CircuitOpenError):
            with pytest.raises(kind) as caught:
                session.get(f"{upstream.url}/ok", timeout=TIMEOUT)
        assert upstream.hits() == 0
        assert f"circuit {upstream.service!r} is forced_open" in str(caught.value)
        copy = pickle.loads(pickle.dumps(caught.value))
        assert isinstance(copy, CircuitOpenRequestError)
        assert (copy.service, copy.retry_after) == (upstream.service, None)

    def test_failure_response_is_returned_unchanged(
        self, session: requests.Session, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A counted 503 reaches the caller as the server sent it, and counts once."""
        response = session.get(f"{upstream.url}/status/503", timeout=TIMEOUT)
        assert (response.status_code, response.text) == (503, "status 503")
        assert response.headers["retry-after"] == "7"
        snapshot = breaker.state(upstream.service)
        assert snapshot.failures == 1
        assert snapshot.last_failure is not None
        assert snapshot.last_failure["reason"] == "HTTP 503 Service Unavailable"

    def test_other_statuses_are_successes(
        self, session: requests.Session, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A 404 or a 501 is the caller's business, not the upstream failing: nothing counts."""
        for status in (404, 501, 200):
            session.get(f"{upstream.url}/status/{status}", timeout=TIMEOUT)
        assert breaker.state(upstream.service).failures == 0

    def test_refused_connections_count(
        self, session: requests.Session, breaker: CircuitBreaker, refused_url: str
    ) -> None:
        """Refused connections are failures (requests' own ConnectionError reaches the caller) until
        the circuit opens; then the rejection is the adapter's."""
        for _ in range(3):
            with pytest.raises(requests.ConnectionError) as caught:
                session.get(f"{refused_url}/ok", timeout=TIMEOUT)
            assert not isinstance(caught.value, CircuitOpenError)
        with pytest.raises(CircuitOpenRequestError):
            session.get(f"{refused_url}/ok", timeout=TIMEOUT)

    def test_timeouts_count(
        self, session: requests.Session, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A read timeout reaches the caller as requests' ReadTimeout and counts as a failure."""
        with pytest.raises(requests.ReadTimeout):
            session.get(f"{upstream.url}/stall", timeout=(TIMEOUT, 0.3))
        assert breaker.state(upstream.service).failures == 1

    def test_custom_failure_statuses(
        self, breaker: CircuitBreaker, make_session: MakeSession, upstream: Upstream
    ) -> None:
        """failure_statuses replaces the set: a 404 counts, a 500 does not."""
        session = make_session(breaker, failure_statuses={404})
        session.get(f"{upstream.url}/status/500", timeout=TIMEOUT)
        assert breaker.state(upstream.service).failures == 0
        session.get(f"{upstream.url}/status/404", timeout=TIMEOUT)
        assert breaker.state(upstream.service).failures == 1


class TestRecovery:
    def test_half_open_trial_closes_on_success(
        self, session: requests.Session, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A half-open circuit lets one trial through; its success closes the circuit."""
        half_open(breaker, upstream.service)
        assert session.get(f"{upstream.url}/ok", timeout=TIMEOUT).status_code == 200
        assert breaker.state(upstream.service).state is CircuitState.CLOSED

    def test_retry_after_holds_the_circuit_open(
        self, make_breaker: MakeBreaker, make_session: MakeSession, clock: ManualClock, upstream: Upstream
    ) -> None:
        """A 503 with Retry-After: 7 that opens a 1-second circuit keeps it open 7 seconds."""
        breaker = make_breaker(max_failures=1, open_seconds=1)
        session = make_session(breaker)
        assert session.get(f"{upstream.url}/status/503", timeout=TIMEOUT).status_code == 503
        clock.advance(2)
        with pytest.raises(CircuitOpenRequestError):
            session.get(f"{upstream.url}/ok", timeout=TIMEOUT)
        clock.advance(6)
        assert session.get(f"{upstream.url}/ok", timeout=TIMEOUT).status_code == 200
        assert upstream.hits() == 2


class TestBodies:
    def test_streamed_body_that_breaks_off_counts(
        self, session: requests.Session, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """With stream=True, a body that breaks off after its first chunk counts as a failure when
        read, and requests' own error reaches the caller with the chunk before it."""
        response = session.get(f"{upstream.url}/broken", timeout=TIMEOUT, stream=True)
        assert breaker.state(upstream.service).failures == 0  # the headers were fine
        chunks: list[bytes] = []
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            chunks.extend(response.iter_content(chunk_size=None))
        assert b"".join(chunks) == STREAM_BODY[0]
        snapshot = breaker.state(upstream.service)
        assert snapshot.failures == 1
        assert snapshot.last_failure is not None
        assert snapshot.last_failure["reason"].startswith("ChunkedEncodingError")

    def test_body_read_at_once_counts_too(
        self, session: requests.Session, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """Without stream=True requests reads the body before returning: a broken one counts."""
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            session.get(f"{upstream.url}/broken", timeout=TIMEOUT)
        assert breaker.state(upstream.service).failures == 1

    def test_whole_streamed_body_is_a_success(
        self, session: requests.Session, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A streamed body read to its end counts nothing, chunk by chunk or by lines."""
        upstream.gate.set()
        response = session.get(f"{upstream.url}/stream", timeout=TIMEOUT, stream=True)
        assert b"".join(response.iter_content(chunk_size=None)) == b"".join(STREAM_BODY)
        assert breaker.state(upstream.service).failures == 0


class TestServices:
    def test_fixed_service_name(
        self, breaker: CircuitBreaker, make_session: MakeSession, upstream: Upstream, other_upstream: Upstream
    ) -> None:
        """service="catalog": both upstreams share the one circuit named catalog."""
        session = make_session(breaker, service="catalog")
        session.get(f"{upstream.url}/status/500", timeout=TIMEOUT)
        session.get(f"{other_upstream.url}/status/500", timeout=TIMEOUT)
        assert breaker.state("catalog").failures == 2
        assert set(breaker.circuits()) == {"catalog"}

    def test_service_function(
        self, breaker: CircuitBreaker, make_session: MakeSession, upstream: Upstream
    ) -> None:
        """service=function: the circuit is named by the function of the prepared request."""
        session = make_session(breaker, service=lambda request: f"{request.method} {request.path_url}")
        session.get(f"{upstream.url}/status/500", timeout=TIMEOUT)
        assert breaker.state("GET /status/500").failures == 1

    def test_policy_per_upstream(
        self, make_session: MakeSession, clock: ManualClock, upstream: Upstream
    ) -> None:
        """An upstream's own ServicePolicy, keyed by host:port, is the one applied."""
        breaker = CircuitBreaker(
            clock=clock,
            default_policy=ServicePolicy(max_failures=5),
            service_policies={upstream.service: ServicePolicy(max_failures=1)},
        )
        session = make_session(breaker)
        session.get(f"{upstream.url}/status/502", timeout=TIMEOUT)
        with pytest.raises(CircuitOpenRequestError):
            session.get(f"{upstream.url}/ok", timeout=TIMEOUT)
