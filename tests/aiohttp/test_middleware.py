"""CircuitBreakerMiddleware on an aiohttp.ClientSession against a real uvicorn upstream."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import pytest_asyncio

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock, half_open
from tnm.circuit_aiohttp import CircuitBreakerMiddleware, CircuitOpenClientError

from ..upstream import Upstream

MakeBreaker = Callable[..., CircuitBreaker]
TIMEOUT = aiohttp.ClientTimeout(total=10)


def session_for(breaker: CircuitBreaker, **options: object) -> aiohttp.ClientSession:
    middleware = CircuitBreakerMiddleware(breaker, **options)  # type: ignore[arg-type]
    return aiohttp.ClientSession(middlewares=[middleware], timeout=TIMEOUT)


@pytest.fixture
def breaker(make_breaker: MakeBreaker) -> CircuitBreaker:
    return make_breaker(max_failures=3, open_seconds=30)


@pytest_asyncio.fixture
async def session(breaker: CircuitBreaker) -> AsyncIterator[aiohttp.ClientSession]:
    async with session_for(breaker) as session:
        yield session


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        await response.read()
        return response.status


class TestOpening:
    @pytest.mark.asyncio
    async def test_failing_upstream_opens_its_own_circuit(
        self,
        session: aiohttp.ClientSession,
        breaker: CircuitBreaker,
        upstream: Upstream,
        other_upstream: Upstream,
    ) -> None:
        """Three 500s open the upstream's circuit; the next request is refused without reaching it,
        while another upstream still answers."""
        for _ in range(3):
            assert await status_of(session, f"{upstream.url}/status/500") == 500
        with pytest.raises(CircuitOpenClientError) as caught:
            await session.get(f"{upstream.url}/status/500")
        assert upstream.hits() == 3
        assert caught.value.service == upstream.service
        assert caught.value.retry_after == pytest.approx(30)
        assert caught.value.request is not None
        assert str(caught.value.request.url) == f"{upstream.url}/status/500"
        assert await status_of(session, f"{other_upstream.url}/ok") == 200
        assert breaker.state(other_upstream.service).state is CircuitState.CLOSED

    @pytest.mark.asyncio
    async def test_rejection_is_a_connection_error_and_an_open_error(
        self, session: aiohttp.ClientSession, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """Code catching aiohttp.ClientConnectionError, ClientError or CircuitOpenError catches the
        rejection; its message names the circuit, and it pickles with its fields."""
        breaker.force_open(upstream.service)
        for kind in (aiohttp.ClientConnectionError, aiohttp.ClientError, CircuitOpenError):
            with pytest.raises(kind) as caught:
                await session.get(f"{upstream.url}/ok")
        assert upstream.hits() == 0
        assert f"circuit {upstream.service!r} is forced_open" in str(caught.value)
        copy = pickle.loads(pickle.dumps(caught.value))
        assert isinstance(copy, CircuitOpenClientError)
        assert (copy.service, copy.retry_after) == (upstream.service, None)

    @pytest.mark.asyncio
    async def test_failure_response_is_returned_unchanged(
        self, session: aiohttp.ClientSession, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A counted 503 reaches the caller as the server sent it, and counts once."""
        async with session.get(f"{upstream.url}/status/503") as response:
            assert (response.status, await response.text()) == (503, "status 503")
            assert response.headers["Retry-After"] == "7"
        snapshot = breaker.state(upstream.service)
        assert snapshot.failures == 1
        assert snapshot.last_failure is not None
        assert snapshot.last_failure["reason"] == "HTTP 503 Service Unavailable"

    @pytest.mark.asyncio
    async def test_other_statuses_are_successes(
        self, session: aiohttp.ClientSession, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A 404 or a 501 is the caller's business, not the upstream failing: nothing counts."""
        for status in (404, 501, 200):
            assert await status_of(session, f"{upstream.url}/status/{status}") == status
        assert breaker.state(upstream.service).failures == 0

    @pytest.mark.asyncio
    async def test_refused_connections_count(
        self, session: aiohttp.ClientSession, breaker: CircuitBreaker, refused_url: str
    ) -> None:
        """Refused connections are failures (aiohttp's own error reaches the caller) until the
        circuit opens; then the rejection is the middleware's."""
        for _ in range(3):
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.get(f"{refused_url}/ok")
        with pytest.raises(CircuitOpenClientError):
            await session.get(f"{refused_url}/ok")

    @pytest.mark.asyncio
    async def test_read_timeout_counts(
        self, session: aiohttp.ClientSession, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A socket read timeout reaches the caller as aiohttp's ServerTimeoutError and counts."""
        with pytest.raises(aiohttp.ServerTimeoutError):
            await session.get(f"{upstream.url}/stall", timeout=aiohttp.ClientTimeout(sock_read=0.3))
        assert breaker.state(upstream.service).failures == 1

    @pytest.mark.asyncio
    async def test_total_timeout_counts(
        self, session: aiohttp.ClientSession, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """The session's total timeout cancels the request from outside the middleware: it still
        reaches the caller as a TimeoutError and counts as a failure."""
        with pytest.raises(asyncio.TimeoutError):
            await session.get(f"{upstream.url}/stall", timeout=aiohttp.ClientTimeout(total=0.3))
        snapshot = breaker.state(upstream.service)
        assert snapshot.failures == 1
        assert snapshot.last_failure is not None
        assert snapshot.last_failure["reason"].startswith("TimeoutError")

    @pytest.mark.asyncio
    async def test_custom_failure_statuses(self, breaker: CircuitBreaker, upstream: Upstream) -> None:
        """failure_statuses replaces the set: a 404 counts, a 500 does not."""
        async with session_for(breaker, failure_statuses={404}) as session:
            await status_of(session, f"{upstream.url}/status/500")
            assert breaker.state(upstream.service).failures == 0
            await status_of(session, f"{upstream.url}/status/404")
        assert breaker.state(upstream.service).failures == 1


class TestRecovery:
    @pytest.mark.asyncio
    async def test_half_open_trial_closes_on_success(
        self, session: aiohttp.ClientSession, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A half-open circuit lets one trial through; its success closes the circuit."""
        half_open(breaker, upstream.service)
        assert await status_of(session, f"{upstream.url}/ok") == 200
        assert breaker.state(upstream.service).state is CircuitState.CLOSED

    @pytest.mark.asyncio
    async def test_cancelled_trial_gives_its_permit_back(
        self, make_breaker: MakeBreaker, upstream: Upstream
    ) -> None:
        """A half-open trial cancelled in flight (the caller's task cancelled) returns its permit
        at once: the next request is the trial, and nothing counted the cancellation."""
        breaker = make_breaker(max_failures=1, open_seconds=30, half_open_max_calls=1)
        half_open(breaker, upstream.service)
        async with session_for(breaker) as session:
            task = asyncio.ensure_future(session.get(f"{upstream.url}/stall"))
            assert await asyncio.to_thread(upstream.wait_for_hits, "/stall", 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert breaker.state(upstream.service).state is CircuitState.HALF_OPEN
            assert await status_of(session, f"{upstream.url}/ok") == 200
        assert breaker.state(upstream.service).state is CircuitState.CLOSED

    @pytest.mark.asyncio
    async def test_retry_after_holds_the_circuit_open(
        self, make_breaker: MakeBreaker, clock: ManualClock, upstream: Upstream
    ) -> None:
        """A 503 with Retry-After: 7 that opens a 1-second circuit keeps it open 7 seconds."""
        breaker = make_breaker(max_failures=1, open_seconds=1)
        async with session_for(breaker) as session:
            assert await status_of(session, f"{upstream.url}/status/503") == 503
            clock.advance(2)
            with pytest.raises(CircuitOpenClientError):
                await session.get(f"{upstream.url}/ok")
            clock.advance(6)
            assert await status_of(session, f"{upstream.url}/ok") == 200
        assert upstream.hits() == 2


class TestServices:
    @pytest.mark.asyncio
    async def test_fixed_service_name(
        self, breaker: CircuitBreaker, upstream: Upstream, other_upstream: Upstream
    ) -> None:
        """service="catalog": both upstreams share the one circuit named catalog."""
        async with session_for(breaker, service="catalog") as session:
            await status_of(session, f"{upstream.url}/status/500")
            await status_of(session, f"{other_upstream.url}/status/500")
        assert breaker.state("catalog").failures == 2
        assert set(breaker.circuits()) == {"catalog"}

    @pytest.mark.asyncio
    async def test_service_function(self, breaker: CircuitBreaker, upstream: Upstream) -> None:
        """service=function: the circuit is named by the function of the ClientRequest."""
        async with session_for(breaker, service=lambda request: f"{request.method} {request.url.path}") as s:
            await status_of(s, f"{upstream.url}/status/500")
        assert breaker.state("GET /status/500").failures == 1

    @pytest.mark.asyncio
    async def test_policy_per_upstream(self, clock: ManualClock, upstream: Upstream) -> None:
        """An upstream's own ServicePolicy, keyed by host:port, is the one applied."""
        breaker = CircuitBreaker(
            clock=clock,
            default_policy=ServicePolicy(max_failures=5),
            service_policies={upstream.service: ServicePolicy(max_failures=1)},
        )
        async with session_for(breaker) as session:
            await status_of(session, f"{upstream.url}/status/502")
            with pytest.raises(CircuitOpenClientError):
                await session.get(f"{upstream.url}/ok")
