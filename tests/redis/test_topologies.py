"""Redis Cluster (3 masters + 3 replicas) and Sentinel (primary, replica, 3 sentinels) as
first-class stores: every operation across slots, trips shared, failovers survived."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster as aiocluster
from click.testing import CliRunner
from redis.cluster import ClusterNode, RedisCluster

from tnm.circuit import CircuitBackendError, CircuitBreaker, CircuitOpenError, CircuitState, ServicePolicy
from tnm.circuit_cli import cli

from ..redis_topologies import Cluster, SentinelSet, TLSServer
from .helpers import traffic, wait_for

SERVICES = [f"svc-{n}" for n in range(12)]  # spread over every master's slots
POLICY = ServicePolicy(max_failures=2, window_seconds=60, open_seconds=60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    topology = Cluster()
    topology.start()
    yield topology
    topology.cleanup()


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    topology = SentinelSet()
    topology.start()
    yield topology
    topology.cleanup()


def _breaker(url: str, namespace: str, **options: Any) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "redis", redis_url=url, namespace=namespace, default_policy=POLICY, socket_timeout=0.5, **options
    )
    breaker.initialize()
    return breaker


def _fail() -> None:
    raise ConnectionError("down")


def _exercise(url: str, namespace: str) -> None:
    """Every operation, sync and async, on services spread over the store."""
    app = _breaker(url, namespace)
    other = _breaker(url, namespace)
    try:
        for service in SERVICES:
            other.is_available(service)  # mirrored, so that trips must reach it
        for service in SERVICES[:4]:
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    app.execute(service, _fail)
        protected = app.protect(SERVICES[4])(_fail)
        for _ in range(2):
            with pytest.raises(ConnectionError):
                protected()

        async def afail() -> None:
            raise ConnectionError("down")

        async def async_part() -> None:
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    await app.execute_async(SERVICES[5], afail)
            with pytest.raises(CircuitOpenError):
                await app.execute_async(SERVICES[5], afail)
            await app.aclose()

        asyncio.run(async_part())
        app.force_open(SERVICES[6], "maintenance")
        for service in SERVICES[:7]:
            assert wait_for(lambda s=service: not other.is_available(s), 2), service  # type: ignore[misc]
        app.reset(SERVICES[0])
        assert wait_for(lambda: other.is_available(SERVICES[0]), 2)
        for service in SERVICES[7:]:
            assert other.execute(service, lambda: 1) == 1
        fresh = _breaker(url, namespace)
        states = {s.service: s.state for s in fresh.states()}
        assert set(SERVICES) <= set(states), states
        assert states[SERVICES[6]] is CircuitState.FORCED_OPEN
        assert states[SERVICES[1]] is CircuitState.OPEN
        fresh.close()
    finally:
        app.close()
        other.close()


def _failover_with_traffic(url: str, namespace: str, kill: Any, promoted: Any) -> None:
    """Two processes run traffic while the primary holding the state is killed: no caller
    sees an error, the forced-open service never runs, and the state replicated before the
    kill is back, with new trips shared, within a stated bound once a replica is promoted."""
    ops = _breaker(url, namespace)
    ops.force_open("forced", "maintenance")
    for _ in range(3):
        ops.record_failure("down", "down")
    ops.close()
    time.sleep(0.2)  # let replication carry the writes (WAIT is not available to the breaker)
    with traffic(url, namespace, 12.0, 2) as running:
        kill()
        assert wait_for(promoted, 20), "no replica was promoted"
        deadline = time.monotonic() + 10
        while True:  # the store answers again through the new primary
            try:
                tripper = _breaker(url, namespace)
                break
            except CircuitBackendError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert tripper.state("forced").state is CircuitState.FORCED_OPEN  # survived the failover
        for _ in range(3):
            tripper.record_failure("tripped", "down")
        tripped_at = time.time()
        tripper.close()
        results = running.results()
    print(results)
    for result in results:
        assert result["foreign"] == [], result
        assert result["forced_runs"] == 0, result
        assert result["healthy_rejected"] == 0, result
        assert result["tripped_seen_at"] is not None, result
        assert result["tripped_seen_at"] - tripped_at < 3.0, result
    assert sum(r["down_runs"] for r in results) <= 3, results


class TestCluster:
    @pytest.mark.slow
    def test_every_operation_across_slots(self, cluster: Cluster) -> None:
        """protect, execute, execute_async, trips, force_open, reset and states() over every master."""
        _exercise(cluster.url, "cl-ops")

    @pytest.mark.slow
    def test_ready_cluster_clients(self, cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
        """Ready RedisCluster clients work, and the background threads log nothing while idle."""
        nodes = [(n.client().connection_pool.connection_kwargs["host"], n.port) for n in cluster.nodes[:3]]
        client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes])  # type: ignore[no-untyped-call]
        aclient = aiocluster.RedisCluster(startup_nodes=[aiocluster.ClusterNode(h, p) for h, p in nodes])
        caplog.set_level(logging.INFO, logger="tnm.circuit")
        breaker = CircuitBreaker(
            "redis", client=client, async_client=aclient, namespace="cl-ready", default_policy=POLICY,
            refresh_interval=0.1,
        )  # fmt: skip
        watcher = CircuitBreaker("redis", client=client, namespace="cl-ready", default_policy=POLICY)
        breaker.initialize()
        watcher.initialize()
        try:
            for service in SERVICES:
                watcher.is_available(service)
                breaker.record_failure(service, "x")
                breaker.record_failure(service, "x")
            for service in SERVICES:
                assert wait_for(lambda s=service: not watcher.is_available(s), 2), service  # type: ignore[misc]

            async def async_part() -> None:
                assert not await breaker.ais_available(SERVICES[0])
                await aclient.aclose()

            asyncio.run(async_part())
            time.sleep(0.5)  # several refresh rounds
            problems = [
                r for r in caplog.records if r.levelno >= logging.WARNING and "opened" not in r.getMessage()
            ]
            assert problems == []
        finally:
            breaker.close()
            watcher.close()
            client.close()

    @pytest.mark.slow
    def test_fleet_policy_on_a_cluster(self, cluster: Cluster) -> None:
        """A fleet policy override is stored, merged and applied by another process on a cluster."""
        setter = _breaker(cluster.url, "cl-policy", refresh_interval=0.1)
        other = _breaker(cluster.url, "cl-policy", refresh_interval=0.1)
        try:
            setter.set_policy(SERVICES[0], {"max_failures": 2}, fleet=True)
            setter.set_policy(SERVICES[0], {"open_seconds": 4}, fleet=True)
            assert setter.policy_overrides() == {SERVICES[0]: {"max_failures": 2, "open_seconds": 4}}
            deadline = time.monotonic() + 5
            while other.policy_for(SERVICES[0]).open_seconds != 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert (other.policy_source(SERVICES[0]), other.policy_for(SERVICES[0]).max_failures) == (
                "fleet",
                2,
            )
        finally:
            setter.close()
            other.close()

    @pytest.mark.slow
    def test_cli_status_on_a_cluster(self, cluster: Cluster) -> None:
        """tnm-circuit status lists the services of every master."""
        breaker = _breaker(cluster.url, "cl-cli")
        for service in SERVICES:
            breaker.record_failure(service, "x")
        breaker.close()
        result = CliRunner().invoke(
            cli,
            ["--redis-url", cluster.url, "--namespace", "cl-cli", "status", "--json"],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert {row["service"] for row in json.loads(result.stdout)} >= set(SERVICES)

    @pytest.mark.slow
    def test_master_failover_mid_traffic(self, cluster: Cluster) -> None:
        """A master is killed mid-traffic: callers never see an error, state comes back after promotion."""
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", cluster.nodes[0].port)])  # type: ignore[no-untyped-call]
        owner = client.get_node_from_key("cl-fail:{forced}:state")
        client.close()
        victim = next(n for n in cluster.nodes if n.port == owner.port)

        def kill() -> None:
            assert victim.process is not None
            os.kill(victim.process.pid, signal.SIGKILL)
            victim.process.wait(10)
            victim.process = None

        def promoted() -> bool:
            alive = next(n for n in cluster.nodes if n.process is not None)
            slots = alive.client().cluster("slots")
            return all(int(entry[2][1]) != victim.port for entry in slots) and (
                alive.client().cluster("info")["cluster_state"] == "ok"
            )

        _failover_with_traffic(cluster.url, "cl-fail", kill, promoted)

    @pytest.mark.slow
    def test_every_node_down_is_a_storage_error(self, cluster: Cluster) -> None:
        """With every node gone, calls still run and are counted per process; operator commands
        raise CircuitBackendError, never a raw redis-py error. (Runs last: it stops the cluster.)"""
        breaker = _breaker(cluster.url, "cl-down")
        breaker.execute(SERVICES[0], lambda: 1)
        for node in cluster.nodes:
            node.stop()
        assert breaker.execute(SERVICES[0], lambda: 2) == 2
        for _ in range(2):
            with pytest.raises(ConnectionError):
                breaker.execute(SERVICES[0], _fail)
        with pytest.raises(CircuitOpenError):
            breaker.execute(SERVICES[0], lambda: 3)  # decided in this process
        with pytest.raises(CircuitBackendError):
            breaker.force_open(SERVICES[1], "x")
        breaker.close()


class TestSentinel:
    @pytest.mark.slow
    def test_every_operation_through_sentinel(self, sentinels: SentinelSet) -> None:
        """A redis+sentinel:// URL reaches the primary for every operation."""
        _exercise(sentinels.url, "se-ops")

    @pytest.mark.slow
    def test_primary_failover_mid_traffic(self, sentinels: SentinelSet) -> None:
        """The primary is killed mid-traffic: the backend follows the promoted replica."""
        first = sentinels.current_primary_port()
        victim = sentinels.primary if sentinels.primary.port == first else sentinels.replica

        def kill() -> None:
            victim.stop()

        _failover_with_traffic(
            sentinels.url, "se-fail", kill, lambda: sentinels.current_primary_port() != first
        )
        # The old primary comes back empty and is demoted: writes keep going to the new one.
        victim.start()
        breaker = _breaker(sentinels.url, "se-fail")
        breaker.record_failure("after", "x")
        assert breaker.state("forced").state is CircuitState.FORCED_OPEN
        assert breaker.state("after").failures == 1
        breaker.close()


def test_sentinel_url_needs_a_master_name() -> None:
    """A Sentinel URL without the primary's name fails at construction, naming redis_url."""
    with pytest.raises(Exception) as info:
        CircuitBreaker("redis", redis_url="redis+sentinel://127.0.0.1:26379")
    assert getattr(info.value, "field", None) == "redis_url"
    assert isinstance(redis.RedisError, type)


class TestTLS:
    @pytest.mark.slow
    def test_rediss_with_ca_and_client_certificates(self) -> None:
        """rediss:// with ssl_ca_certs and a client certificate shares trips; a wrong CA says why."""
        server = TLSServer()
        server.start()
        try:
            app = _breaker(server.url(), "tls")
            other = _breaker(server.url(), "tls")
            other.is_available("svc")
            app.record_failure("svc", "x")
            app.record_failure("svc", "x")
            assert wait_for(lambda: not other.is_available("svc"), 2)
            app.close()
            other.close()
            with pytest.raises(CircuitBackendError, match="certificate verify failed"):
                CircuitBreaker("redis", redis_url=server.url(ca="other.crt"), socket_timeout=2).initialize()
        finally:
            server.cleanup()
