"""AsyncCircuitBreakerTransport with httpx.AsyncClient against a real uvicorn upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit.testing import half_open
from tnm.circuit_httpx import AsyncCircuitBreakerTransport, CircuitOpenRequestError

from .upstream import STREAM_BODY, Upstream

MakeBreaker = Callable[..., CircuitBreaker]
SLOW_READ = httpx.Timeout(10.0, read=0.3)  # only against /stall, which never answers


@pytest.fixture
def breaker(make_breaker: MakeBreaker) -> CircuitBreaker:
    return make_breaker(max_failures=3, open_seconds=30)


@pytest_asyncio.fixture
async def client(breaker: CircuitBreaker) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AsyncCircuitBreakerTransport(breaker), timeout=10.0) as client:
        yield client


class TestOpening:
    @pytest.mark.asyncio
    async def test_failing_upstream_opens_its_own_circuit(
        self,
        client: httpx.AsyncClient,
        breaker: CircuitBreaker,
        upstream: Upstream,
        other_upstream: Upstream,
    ) -> None:
        """Three 503s open the upstream's circuit; the next request is refused without reaching it,
        while another upstream still answers."""
        for _ in range(3):
            assert (await client.get(f"{upstream.url}/status/503")).status_code == 503
        with pytest.raises(CircuitOpenRequestError) as caught:
            await client.get(f"{upstream.url}/status/503")
        assert upstream.hits() == 3
        assert isinstance(caught.value, httpx.TransportError)
        assert isinstance(caught.value, CircuitOpenError)
        assert caught.value.service == upstream.service
        assert caught.value.request.url == f"{upstream.url}/status/503"
        assert (await client.get(f"{other_upstream.url}/ok")).text == "ok"
        assert other_upstream.hits() == 1

    @pytest.mark.asyncio
    async def test_timeouts_count(self, breaker: CircuitBreaker, upstream: Upstream) -> None:
        """Read timeouts are failures: after three, the stalling upstream gets no fourth request."""
        transport = AsyncCircuitBreakerTransport(breaker)
        async with httpx.AsyncClient(transport=transport, timeout=SLOW_READ) as client:
            for _ in range(3):
                with pytest.raises(httpx.ReadTimeout):
                    await client.get(f"{upstream.url}/stall")
            with pytest.raises(CircuitOpenRequestError):
                await client.get(f"{upstream.url}/stall")
        assert upstream.hits("/stall") == 3

    @pytest.mark.asyncio
    async def test_refused_connections_count(self, client: httpx.AsyncClient, refused_url: str) -> None:
        """Connection refused is a failure: three open the circuit, the fourth is refused by it."""
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await client.get(refused_url)
        with pytest.raises(CircuitOpenRequestError):
            await client.get(refused_url)


class TestWhatDoesNotCount:
    @pytest.mark.asyncio
    async def test_not_found_is_a_success(
        self, client: httpx.AsyncClient, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """404s never open the circuit: every one reaches the server."""
        for _ in range(5):
            assert (await client.get(f"{upstream.url}/status/404")).status_code == 404
        assert upstream.hits() == 5
        assert breaker.state(upstream.service).failures == 0

    @pytest.mark.asyncio
    async def test_status_removed_from_failure_statuses(
        self, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """With failure_statuses={500, 502}, 503s are successes and all reach the server."""
        transport = AsyncCircuitBreakerTransport(breaker, failure_statuses={500, 502})
        async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:
            for _ in range(5):
                assert (await client.get(f"{upstream.url}/status/503")).status_code == 503
        assert upstream.hits() == 5
        assert breaker.state(upstream.service).failures == 0

    @pytest.mark.asyncio
    async def test_policy_ignore_exceptions_apply(
        self, make_breaker: MakeBreaker, upstream: Upstream
    ) -> None:
        """A service policy that ignores ReadTimeout keeps a stalling upstream's circuit closed."""
        breaker = make_breaker(
            {upstream.service: ServicePolicy(max_failures=1, ignore_exceptions=[httpx.ReadTimeout])}
        )
        transport = AsyncCircuitBreakerTransport(breaker)
        async with httpx.AsyncClient(transport=transport, timeout=SLOW_READ) as client:
            for _ in range(2):
                with pytest.raises(httpx.ReadTimeout):
                    await client.get(f"{upstream.url}/stall")
        assert breaker.state(upstream.service).state is CircuitState.CLOSED


class TestStreaming:
    @pytest.mark.asyncio
    async def test_outcome_known_at_headers_body_untouched(
        self, client: httpx.AsyncClient, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A streamed trial closes the circuit when its headers arrive, before the body is
        sent; the body then streams whole."""
        half_open(breaker, upstream.service)
        async with client.stream("GET", f"{upstream.url}/stream") as response:
            assert response.status_code == 200
            assert breaker.state(upstream.service).state is CircuitState.CLOSED
            chunks = response.aiter_raw()
            assert await chunks.__anext__() == STREAM_BODY[0]
            upstream.gate.set()
            assert b"".join([chunk async for chunk in chunks]) == STREAM_BODY[1]


class TestCancellation:
    @pytest.mark.asyncio
    async def test_cancelled_trial_returns_its_permit(
        self, client: httpx.AsyncClient, breaker: CircuitBreaker, upstream: Upstream
    ) -> None:
        """A half-open trial cancelled in flight gives its permit back: the next request is the
        new trial, and its success closes the circuit."""
        half_open(breaker, upstream.service)  # one trial at a time (half_open_max_calls=1)
        trial = asyncio.create_task(client.get(f"{upstream.url}/stall"))
        assert await asyncio.to_thread(upstream.wait_for_hits, "/stall", 1)
        with pytest.raises(CircuitOpenRequestError):  # the permit is taken
            await client.get(f"{upstream.url}/ok")
        assert upstream.hits("/ok") == 0
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        assert (await client.get(f"{upstream.url}/ok")).status_code == 200
        assert breaker.state(upstream.service).state is CircuitState.CLOSED


class TestLifecycle:
    @pytest.mark.asyncio
    async def test_closing_the_client_closes_the_inner_transport(self, breaker: CircuitBreaker) -> None:
        """The client's aclose reaches the wrapped transport."""
        closed: list[str] = []

        class Inner(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                return httpx.Response(200)

            async def aclose(self) -> None:
                closed.append("inner")

        async with httpx.AsyncClient(transport=AsyncCircuitBreakerTransport(breaker, transport=Inner())) as c:
            await c.get("http://upstream.test/")
        assert closed == ["inner"]

    def test_default_inner_transport_is_httpx(self, breaker: CircuitBreaker) -> None:
        """Without transport=, requests go through httpx's own AsyncHTTPTransport."""
        assert isinstance(AsyncCircuitBreakerTransport(breaker).transport, httpx.AsyncHTTPTransport)


class TestInnerTransports:
    @pytest.mark.asyncio
    async def test_inner_send_that_returns_an_awaitable(self, make_breaker: MakeBreaker) -> None:
        """An inner transport whose handle_async_request is a plain function returning an
        awaitable is still awaited, and its failure statuses still count."""

        async def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(500)

        class Inner(httpx.AsyncBaseTransport):
            def handle_async_request(self, request: httpx.Request) -> Any:  # type: ignore[override]
                return answer(request)

        breaker = make_breaker(max_failures=2)
        async with httpx.AsyncClient(transport=AsyncCircuitBreakerTransport(breaker, transport=Inner())) as c:
            assert [(await c.get("http://upstream.test/")).status_code for _ in range(2)] == [500, 500]
            with pytest.raises(CircuitOpenRequestError):
                await c.get("http://upstream.test/")


class TestRetryAfter:
    @pytest.mark.asyncio
    async def test_retry_after_stretches_the_open_time(
        self, make_breaker: MakeBreaker, upstream: Upstream
    ) -> None:
        """With the async client too, a 429 with Retry-After: 7 that opens the circuit holds it 7 s."""
        breaker = make_breaker(max_failures=2, open_seconds=2, max_open_seconds=60)
        async with httpx.AsyncClient(transport=AsyncCircuitBreakerTransport(breaker), timeout=10.0) as client:
            for _ in range(2):
                assert (await client.get(f"{upstream.url}/status/429")).status_code == 429
            with pytest.raises(CircuitOpenRequestError) as caught:
                await client.get(f"{upstream.url}/ok")
        assert caught.value.retry_after == pytest.approx(7)
