"""``client=`` alone: async calls get an async client built from the same connection settings."""

from __future__ import annotations

import asyncio

import pytest
import redis

from tnm.circuit import CircuitBreaker, CircuitState, EventKind, InvalidConfigError, ServicePolicy
from tnm.circuit.testing import capture_events


async def _fail() -> None:
    raise ConnectionError("down")


class _OwnPool(redis.ConnectionPool):
    """A pool class the backend does not know how to mirror on asyncio."""


class TestDerivedAsyncClient:
    def test_async_calls_share_state_through_the_sync_clients_server(self, redis_url: str) -> None:
        """With only ``client=``, async failures are stored in the same Redis, with no storage event."""
        client = redis.Redis.from_url(redis_url)
        breaker = CircuitBreaker(
            "redis", client=client, namespace="derived", default_policy=ServicePolicy(max_failures=2)
        )
        observer = CircuitBreaker("redis", redis_url=redis_url, namespace="derived")
        try:
            breaker.initialize()
            with capture_events(breaker) as events:

                async def main() -> None:
                    for _ in range(2):
                        with pytest.raises(ConnectionError):
                            await breaker.execute_async("svc", _fail)
                    await breaker.aclose()

                asyncio.run(main())
            kinds = {event.kind for event in events}
            assert EventKind.STORAGE_DEGRADED not in kinds
            assert observer.state("svc").state is CircuitState.OPEN
        finally:
            observer.close()
            client.close()

    def test_underivable_client_is_a_configuration_error(self, redis_url: str) -> None:
        """A client whose settings cannot be carried over makes the first async call an InvalidConfigError."""
        client = redis.Redis(connection_pool=_OwnPool.from_url(redis_url))
        breaker = CircuitBreaker("redis", client=client, namespace="derived")
        try:
            breaker.initialize()
            with capture_events(breaker) as events, pytest.raises(InvalidConfigError) as info:
                asyncio.run(breaker.execute_async("svc", _fail))
            assert info.value.field == "async_client"
            assert [e for e in events if e.kind is EventKind.STORAGE_DEGRADED] == []
            assert breaker.storage_available
        finally:
            breaker.close()
            client.close()
