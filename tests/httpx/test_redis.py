"""The transports on the Redis backend: one circuit per upstream shared by processes, and an
async client that never makes the breaker do blocking I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tnm.circuit import CircuitBreaker, CircuitState
from tnm.circuit_httpx import AsyncCircuitBreakerTransport, CircuitBreakerTransport, CircuitOpenRequestError

from ..blocking_spy import spy_on_blocking
from ..other_process import POLICY, run_script, until_open
from ..upstream import Upstream

# Another process: an httpx.AsyncClient sends the given requests through its own Redis-backed
# breaker and prints each outcome (a status code, or "refused").
OTHER_PROCESS = """
import asyncio, json, os, sys
import httpx
from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_httpx import AsyncCircuitBreakerTransport, CircuitOpenRequestError

async def main():
    breaker = CircuitBreaker(
        "redis", redis_url=os.environ["REDIS_URL"], namespace=os.environ["NAMESPACE"],
        default_policy=ServicePolicy(**json.loads(os.environ["POLICY"])),
    )
    await breaker.ainitialize()
    outcomes = []
    try:
        transport = AsyncCircuitBreakerTransport(breaker)
        async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:
            for url in sys.argv[1:]:
                try:
                    outcomes.append((await client.get(url)).status_code)
                except CircuitOpenRequestError:
                    outcomes.append("refused")
    finally:
        await breaker.aclose()
    print(json.dumps(outcomes))

asyncio.run(main())
"""


def in_other_process(redis_url: str, *urls: str) -> list[Any]:
    return run_script(OTHER_PROCESS, redis_url, *urls)


class TestSharedAcrossProcesses:
    def test_opened_elsewhere_refused_here(
        self, make_redis_breaker: Callable[..., CircuitBreaker], redis_url: str, upstream: Upstream
    ) -> None:
        """Another process's failures open the upstream's circuit for this process too: its next
        request is refused and never reaches the server."""
        breaker = make_redis_breaker(use_clock=False, **POLICY)
        with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=10.0) as client:
            assert client.get(f"{upstream.url}/ok").status_code == 200
            failing = f"{upstream.url}/status/503"
            assert in_other_process(redis_url, failing, failing, failing) == [503, 503, "refused"]
            # This process learns of the opening in the background (pub/sub): wait for it, bounded.
            handle = breaker.circuits()[upstream.service]
            until_open(handle)
            with pytest.raises(CircuitOpenRequestError):
                client.get(failing)
        assert (upstream.hits("/ok"), upstream.hits("/status/503")) == (1, 2)

    def test_new_process_honours_an_open_circuit_at_once(
        self, make_redis_breaker: Callable[..., CircuitBreaker], redis_url: str, upstream: Upstream
    ) -> None:
        """A process that starts while the upstream's circuit is open refuses its very first request."""
        breaker = make_redis_breaker(use_clock=False, **POLICY)
        with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=10.0) as client:
            for _ in range(2):
                assert client.get(f"{upstream.url}/status/500").status_code == 500
        assert in_other_process(redis_url, f"{upstream.url}/ok") == ["refused"]
        assert upstream.hits() == 2


class TestAsyncStaysAsync:
    @pytest.mark.asyncio
    async def test_no_sync_breaker_io_on_the_event_loop(
        self,
        make_redis_breaker: Callable[..., CircuitBreaker],
        clock: Any,
        upstream: Upstream,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Failures, the opening, the rejection and a half-open trial through an AsyncClient use
        only the circuit's async methods: the Redis round trips never block the loop."""
        breaker = make_redis_breaker(**POLICY)
        breaker.state(upstream.service)  # the handle exists: spy on its blocking methods
        handle = breaker.circuits()[upstream.service]
        blocking_calls = spy_on_blocking(handle, monkeypatch)

        try:
            transport = AsyncCircuitBreakerTransport(breaker)
            async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:
                for _ in range(2):
                    await client.get(f"{upstream.url}/status/500")
                with pytest.raises(CircuitOpenRequestError):
                    await client.get(f"{upstream.url}/ok")
                clock.advance(61)
                assert (await client.get(f"{upstream.url}/ok")).status_code == 200
            assert blocking_calls == []
            assert (await breaker.astate(upstream.service)).state is CircuitState.CLOSED
        finally:
            await breaker.aclose()  # this loop's async Redis client
        assert upstream.hits() == 3
