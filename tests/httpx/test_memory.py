"""A host no longer called costs nothing: the transports keep nothing per host, and its circuit is
dropped after meta_ttl_seconds like any idle one (unless open, failing or forced), on both backends.

Thousands of distinct hosts cannot be served on loopback, so these tests give the transport an
``httpx.MockTransport`` as its inner transport; time is the breaker's ManualClock.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import httpx
import pytest

from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy
from tnm.circuit.backends.redis._circuit import RedisCircuit
from tnm.circuit.testing import ManualClock
from tnm.circuit_httpx import AsyncCircuitBreakerTransport, CircuitBreakerTransport, CircuitOpenRequestError

from ..redis.helpers import wait_for

TTL = 60.0
POLICY = {"max_failures": 3, "open_seconds": 3600, "window_seconds": 3600}


def answer(request: httpx.Request) -> httpx.Response:
    """200, except 503 from hosts named ``down*`` and 500 from hosts named ``flaky*``."""
    host = request.url.host
    return httpx.Response(503 if host.startswith("down") else 500 if host.startswith("flaky") else 200)


def request(host: str) -> httpx.Request:
    return httpx.Request("GET", f"http://{host}/")


def local_breaker(clock: ManualClock) -> CircuitBreaker:
    return CircuitBreaker(clock=clock, meta_ttl_seconds=TTL, default_policy=ServicePolicy(**POLICY))


KEPT = {"down:80", "flaky:80", "forced:80", "new-0:80", "new-1:80"}


def troubled_hosts(send: Callable[[httpx.Request], object], breaker: CircuitBreaker) -> None:
    """An open host (3 counted 503s), a failing one (one 500, still closed) and a forced one."""
    for _ in range(3):
        send(request("down"))
    send(request("flaky"))
    breaker.force_open("forced:80")


def idle_twice(send: Callable[[httpx.Request], object], clock: ManualClock) -> None:
    """More than a whole meta_ttl_seconds without calling the old hosts (a new host makes each sweep run)."""
    for step in range(2):
        clock.advance(TTL + 1)
        send(request(f"new-{step}"))


def held_by_the_breaker() -> int:
    """Bytes traced to allocations made in the breaker's own packages (the Redis backend's
    threads and the rest of the test process allocate meanwhile, and are left out)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/tnm/circuit*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def circuits_of(service: str, kind: type) -> int:
    """How many circuit objects for ``service`` are alive in this process."""
    return sum(1 for obj in gc.get_objects() if type(obj) is kind and obj.service == service)


def check_kept(breaker: CircuitBreaker) -> None:
    assert set(breaker.circuits()) == KEPT
    assert breaker.state("down:80").state is CircuitState.OPEN
    assert breaker.state("flaky:80").failures == 1
    assert breaker.state("forced:80").state is CircuitState.FORCED_OPEN


class TestManyHostsLocal:
    @pytest.mark.slow
    @pytest.mark.timeout(300)  # 20,000 requests, on a busy machine
    def test_twenty_thousand_hosts_called_once_are_forgotten(self, clock: ManualClock) -> None:
        """A client that called 20,000 hosts once each gives back their circuits and memory after
        meta_ttl_seconds; the open, failing and forced hosts keep theirs and still refuse."""
        breaker = local_breaker(clock)
        transport = CircuitBreakerTransport(breaker, transport=httpx.MockTransport(answer))
        send = transport.handle_request
        troubled_hosts(send, breaker)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for n in range(20_000):
                assert send(request(f"h{n}.example")).status_code == 200
            grown = tracemalloc.get_traced_memory()[0] - base
            idle_twice(send, clock)
            gc.collect()
            left = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        print(f"20,000 hosts: +{grown / 1024:.0f} KiB; after meta_ttl_seconds idle: +{left / 1024:.0f} KiB")
        assert left < grown * 0.05, (grown, left)
        check_kept(breaker)
        with pytest.raises(CircuitOpenRequestError):
            send(request("down"))

    @pytest.mark.slow
    @pytest.mark.asyncio
    async def test_async_transport_forgets_hosts_too(self, clock: ManualClock) -> None:
        """The async transport keeps nothing per host either: 2,000 hosts called once are forgotten."""
        breaker = local_breaker(clock)
        transport = AsyncCircuitBreakerTransport(breaker, transport=httpx.MockTransport(answer))
        for host in ("down", "down", "down", "flaky"):
            await transport.handle_async_request(request(host))
        breaker.force_open("forced:80")
        tracemalloc.start()
        try:
            # (the breaker's own allocations: the event loop and the test run allocate meanwhile,
            # which at 2,000 hosts is the same order as what is measured)
            base = held_by_the_breaker()
            for n in range(2_000):
                await transport.handle_async_request(request(f"h{n}.example"))
            grown = held_by_the_breaker() - base
            for step in range(2):
                clock.advance(TTL + 1)
                await transport.handle_async_request(request(f"new-{step}"))
            gc.collect()
            left = held_by_the_breaker() - base
        finally:
            tracemalloc.stop()
        assert left < grown * 0.05, (grown, left)
        check_kept(breaker)


class TestOnlyKnownHostsCalled:
    @pytest.mark.parametrize("kind", ["sync", "async"])
    @pytest.mark.asyncio
    async def test_hosts_no_longer_called_go_while_others_are(self, clock: ManualClock, kind: str) -> None:
        """The hosts a client stopped calling are forgotten even if it goes on calling only one host it
        already knows (no new circuit is ever made after the burst)."""
        breaker = local_breaker(clock)
        inner = httpx.MockTransport(answer)
        if kind == "sync":
            transport = CircuitBreakerTransport(breaker, transport=inner)

            async def send(req: httpx.Request) -> httpx.Response:
                return transport.handle_request(req)

        else:
            atransport = AsyncCircuitBreakerTransport(breaker, transport=inner)
            send = atransport.handle_async_request
        await send(request("busy"))
        for n in range(1_000):
            await send(request(f"h{n}.example"))
        for _ in range(2):
            clock.advance(TTL + 1)
            assert (await send(request("busy"))).status_code == 200
        assert set(breaker.circuits()) == {"busy:80"}


class TestDroppedCircuits:
    def test_a_dropped_host_comes_back_on_the_breakers_one_circuit(self, clock: ManualClock) -> None:
        """After its circuit is dropped, nothing keeps the old one alive, and the host's next requests
        count on the breaker's circuit for it (the one state(), force_open and the CLI see)."""
        breaker = local_breaker(clock)
        transport = CircuitBreakerTransport(breaker, transport=httpx.MockTransport(answer))
        transport.handle_request(request("flaky"))
        breaker.reset("flaky:80")  # clean again: may be dropped
        kind = type(breaker.circuits()["flaky:80"])
        idle_twice(transport.handle_request, clock)
        gc.collect()
        assert circuits_of("flaky:80", kind) == 0
        for _ in range(3):
            assert transport.handle_request(request("flaky")).status_code == 500
        assert breaker.state("flaky:80").state is CircuitState.OPEN
        with pytest.raises(CircuitOpenRequestError):
            transport.handle_request(request("flaky"))
        assert circuits_of("flaky:80", kind) == 1


class TestManyHostsRedis:
    @pytest.mark.slow
    def test_hosts_called_once_are_forgotten_on_redis(
        self, make_redis_breaker: Callable[..., CircuitBreaker], clock: ManualClock
    ) -> None:
        """On the Redis backend too, hosts no longer called leave this process's memory after
        meta_ttl_seconds, while the open, failing and forced ones stay."""
        breaker = make_redis_breaker(backend_options={"meta_ttl_seconds": TTL}, **POLICY)
        transport = CircuitBreakerTransport(breaker, transport=httpx.MockTransport(answer))
        send = transport.handle_request
        troubled_hosts(send, breaker)
        tracemalloc.start()
        try:
            base = held_by_the_breaker()
            for n in range(1_000):
                assert send(request(f"h{n}.example")).status_code == 200
            assert len(breaker.circuits()) >= 1_000
            grown = held_by_the_breaker() - base
            idle_twice(send, clock)
            assert set(breaker.circuits()) == KEPT  # dropped by the sweep, at once

            def released() -> bool:
                gc.collect()
                alive = sum(1 for o in gc.get_objects() if type(o) is RedisCircuit and o.service[0] == "h")
                return alive == 0 and held_by_the_breaker() - base < grown * 0.2

            # A refresher read already under way holds the dropped circuits until it ends.
            assert wait_for(released, 10), (grown, held_by_the_breaker() - base)
        finally:
            tracemalloc.stop()
        check_kept(breaker)
        with pytest.raises(CircuitOpenRequestError):
            send(request("down"))
