"""The middleware on the Redis backend: one circuit per upstream shared by processes, a service
no longer called dropped, and a session that never makes the breaker do blocking I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock
from tnm.circuit_aiohttp import CircuitBreakerMiddleware, CircuitOpenClientError

from ..blocking_spy import spy_on_blocking
from ..other_process import POLICY, run_script, until_open
from ..upstream import Upstream

# Another process: an aiohttp session sends the given requests through its own Redis-backed
# breaker and prints each outcome (a status code, or "refused").
OTHER_PROCESS = """
import asyncio, json, os, sys
import aiohttp
from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_aiohttp import CircuitBreakerMiddleware, CircuitOpenClientError

async def main():
    breaker = CircuitBreaker(
        "redis", redis_url=os.environ["REDIS_URL"], namespace=os.environ["NAMESPACE"],
        default_policy=ServicePolicy(**json.loads(os.environ["POLICY"])),
    )
    await breaker.ainitialize()
    outcomes = []
    try:
        middleware = CircuitBreakerMiddleware(breaker)
        async with aiohttp.ClientSession(middlewares=[middleware]) as session:
            for url in sys.argv[1:]:
                try:
                    async with session.get(url) as response:
                        outcomes.append(response.status)
                except CircuitOpenClientError:
                    outcomes.append("refused")
    finally:
        await breaker.aclose()
    print(json.dumps(outcomes))

asyncio.run(main())
"""


def in_other_process(redis_url: str, *urls: str) -> list[Any]:
    return run_script(OTHER_PROCESS, redis_url, *urls)


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        await response.read()
        return response.status


class TestSharedAcrossProcesses:
    @pytest.mark.slow
    @pytest.mark.asyncio
    async def test_opened_elsewhere_refused_here(
        self, make_redis_breaker: Callable[..., CircuitBreaker], redis_url: str, upstream: Upstream
    ) -> None:
        """Another process's failures open the upstream's circuit for this process too: its next
        request is refused and never reaches the server."""
        breaker = make_redis_breaker(use_clock=False, **POLICY)
        try:
            async with aiohttp.ClientSession(middlewares=[CircuitBreakerMiddleware(breaker)]) as session:
                assert await status_of(session, f"{upstream.url}/ok") == 200
                failing = f"{upstream.url}/status/503"
                other = await asyncio.to_thread(in_other_process, redis_url, failing, failing, failing)
                assert other == [503, 503, "refused"]
                # This process learns of the opening in the background (pub/sub): wait, bounded.
                handle = breaker.circuits()[upstream.service]
                assert await asyncio.to_thread(until_open, handle)
                with pytest.raises(CircuitOpenClientError):
                    await session.get(failing)
        finally:
            await breaker.aclose()
        assert (upstream.hits("/ok"), upstream.hits("/status/503")) == (1, 2)

    @pytest.mark.slow
    @pytest.mark.asyncio
    async def test_opened_here_refused_in_a_new_process(
        self, make_redis_breaker: Callable[..., CircuitBreaker], redis_url: str, upstream: Upstream
    ) -> None:
        """A process that starts while the upstream's circuit is open refuses its very first request."""
        breaker = make_redis_breaker(use_clock=False, **POLICY)
        try:
            async with aiohttp.ClientSession(middlewares=[CircuitBreakerMiddleware(breaker)]) as session:
                for _ in range(2):
                    assert await status_of(session, f"{upstream.url}/status/500") == 500
        finally:
            await breaker.aclose()
        assert await asyncio.to_thread(in_other_process, redis_url, f"{upstream.url}/ok") == ["refused"]
        assert upstream.hits() == 2


class TestAsyncStaysAsync:
    @pytest.mark.asyncio
    async def test_no_sync_breaker_io_on_the_event_loop(
        self,
        make_redis_breaker: Callable[..., CircuitBreaker],
        clock: ManualClock,
        upstream: Upstream,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Failures, the opening, the rejection, a timeout and a half-open trial use only the
        circuit's async methods: the Redis round trips never block the loop."""
        breaker = make_redis_breaker(max_failures=3, open_seconds=60)
        breaker.state(upstream.service)  # the handle exists: spy on its blocking methods
        handle = breaker.circuits()[upstream.service]
        blocking_calls = spy_on_blocking(handle, monkeypatch)
        try:
            async with aiohttp.ClientSession(middlewares=[CircuitBreakerMiddleware(breaker)]) as session:
                for _ in range(2):
                    await status_of(session, f"{upstream.url}/status/500")
                with pytest.raises(asyncio.TimeoutError):
                    await session.get(f"{upstream.url}/stall", timeout=aiohttp.ClientTimeout(total=0.3))
                with pytest.raises(CircuitOpenClientError):
                    await session.get(f"{upstream.url}/ok")
                clock.advance(61)
                assert await status_of(session, f"{upstream.url}/ok") == 200
            assert blocking_calls == []
            assert (await breaker.astate(upstream.service)).state is CircuitState.CLOSED
        finally:
            await breaker.aclose()


class TestServicesNoLongerCalled:
    @pytest.mark.slow
    @pytest.mark.asyncio
    async def test_dropped_on_both_backends(
        self, make_redis_breaker: Callable[..., CircuitBreaker], clock: ManualClock, upstream: Upstream
    ) -> None:
        """100 circuits used once through the middleware are dropped after meta_ttl_seconds, locally
        and on Redis; the open and forced ones stay (``service=`` names one per path)."""
        policy = {"max_failures": 1, "open_seconds": 3600, "window_seconds": 3600}
        local = CircuitBreaker(clock=clock, meta_ttl_seconds=60, default_policy=ServicePolicy(**policy))
        shared = make_redis_breaker(backend_options={"meta_ttl_seconds": 60}, **policy)
        try:
            for breaker in (local, shared):
                middleware = CircuitBreakerMiddleware(breaker, service=lambda request: request.url.path_qs)
                async with aiohttp.ClientSession(middlewares=[middleware]) as session:
                    assert await status_of(session, f"{upstream.url}/status/503") == 503
                    breaker.force_open("/forced")
                    for n in range(100):
                        await status_of(session, f"{upstream.url}/ok?n={n}")
                    for step in range(2):
                        clock.advance(61)
                        await status_of(session, f"{upstream.url}/ok?step={step}")
                expected = {"/status/503", "/forced", "/ok?step=0", "/ok?step=1"}
                assert set(breaker.circuits()) == expected
        finally:
            await shared.aclose()
