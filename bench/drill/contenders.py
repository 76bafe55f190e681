"""How each contender protects the same httpx call to the upstream.

Every contender's worker sends ``GET upstream/`` through an ``httpx.AsyncClient`` whose
innermost transport records the moment each failure came back from the network (a 5xx or an
error), before any breaker sees it: the drill needs that moment to know when a breaker could
first have known. What differs is only what wraps the call:

- ``none``: nothing;
- ``circuitbreaker``: its decorator around the call, in each process;
- ``pybreaker-redis``: its ``calling()`` block around the call, with its Redis storage (its
  Redis commands are synchronous, so they run on the event loop: pybreaker has no asyncio path
  other than Tornado's);
- ``tnm-local`` / ``tnm-redis``: ``AsyncCircuitBreakerTransport`` from tnm-circuit-httpx, the
  breaker on the local backend (per process) or on Redis (the fleet shares one view).

A ``Contender`` is what a worker app needs: ``fetch()`` returns the upstream's response or raises
one of ``refusals`` (each of which the app answers with 503), plus an optional tnm breaker that
the app installs with tnm-circuit-fastapi.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_httpx import AsyncCircuitBreakerTransport

from .config import Policy


class UpstreamFailure(Exception):
    """The upstream answered 5xx (raised for the peers, whose decorators count exceptions)."""


class RecordingTransport(httpx.AsyncBaseTransport):
    """The network transport, noting when each failure came back (before any breaker sees it)."""

    def __init__(self, failures: list[float]) -> None:
        # httpx's default limits, as an app would have them (they also keep httpcore's pool, whose
        # upkeep grows with the square of its idle connections, small after a stall).
        self.inner = httpx.AsyncHTTPTransport()
        self.failures = failures

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self.inner.handle_async_request(request)
        except Exception:
            self.failures.append(time.monotonic())
            raise
        if response.status_code >= 500:
            self.failures.append(time.monotonic())
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Contender:
    name: str
    fetch: Callable[[], Awaitable[httpx.Response]]
    client: httpx.AsyncClient
    refusals: tuple[type[BaseException], ...] = (UpstreamFailure, httpx.HTTPError)
    breaker: CircuitBreaker | None = None
    failures: list[float] = field(default_factory=list)


def make_contender(
    name: str, upstream: str, policy: Policy, timeout: float, redis_url: str, namespace: str
) -> Contender:
    """The contender ``name``'s client and protected call to ``upstream``."""
    failures: list[float] = []
    recording = RecordingTransport(failures)
    if name in ("tnm-local", "tnm-redis"):
        tnm_policy = ServicePolicy(
            max_failures=policy.threshold,
            window_seconds=60,
            open_seconds=policy.open_seconds,
            half_open_max_calls=1,
        )
        if name == "tnm-redis":
            breaker = CircuitBreaker(
                "redis", redis_url=redis_url, namespace=namespace, default_policy=tnm_policy
            )
        else:
            breaker = CircuitBreaker(default_policy=tnm_policy)
        client = httpx.AsyncClient(
            transport=AsyncCircuitBreakerTransport(breaker, transport=recording), timeout=timeout
        )
        contender = Contender(name, lambda: client.get(upstream), client, breaker=breaker)
    else:
        client = httpx.AsyncClient(transport=recording, timeout=timeout)
        contender = _peer(name, client, upstream, policy, redis_url, namespace)
    contender.failures = failures
    return contender


def _peer(
    name: str, client: httpx.AsyncClient, upstream: str, policy: Policy, redis_url: str, namespace: str
) -> Contender:
    async def get() -> httpx.Response:
        response = await client.get(upstream)
        if response.status_code >= 500:
            raise UpstreamFailure(response.status_code)
        return response

    if name == "none":
        return Contender(name, get, client)
    if name == "circuitbreaker":
        import circuitbreaker

        cb = circuitbreaker.CircuitBreaker(
            failure_threshold=policy.threshold,
            recovery_timeout=policy.open_seconds,
            expected_exception=(UpstreamFailure, httpx.HTTPError),
            name="upstream",
        )
        return Contender(
            name,
            cb(get),
            client,
            refusals=(UpstreamFailure, httpx.HTTPError, circuitbreaker.CircuitBreakerError),
        )
    if name == "pybreaker-redis":
        import pybreaker
        import redis

        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED,
            redis.Redis.from_url(redis_url, socket_timeout=0.5),
            namespace=namespace,
        )
        pb = pybreaker.CircuitBreaker(
            fail_max=policy.threshold, reset_timeout=policy.open_seconds, state_storage=storage
        )

        async def fetch() -> httpx.Response:
            with pb.calling():
                return await get()

        return Contender(
            name, fetch, client, refusals=(UpstreamFailure, httpx.HTTPError, pybreaker.CircuitBreakerError)
        )
    raise ValueError(f"unknown contender {name!r}")
