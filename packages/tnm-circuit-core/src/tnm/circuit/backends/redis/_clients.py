"""Connections to the store: one server, a Redis Cluster, or a Sentinel-managed primary.

Every command is bounded by ``socket_timeout``. Cluster clients retry a failed command
once, without backoff (redis-py's default backs off for seconds, which would hold a
caller during a failover); the backend's own probes bring it back instead. A Sentinel
client asks the sentinels for the primary on each new connection and treats
``READONLY`` (a demoted primary) as a lost connection, so writes follow a failover.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.retry as aioretry
import redis.asyncio.sentinel as aiosentinel
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry
from redis.sentinel import Sentinel

from ._urls import Target

__all__ = [
    "STORAGE_ERRORS",
    "aclose_client",
    "close_client",
    "is_cluster",
    "make_async_client",
    "make_client",
]

STORAGE_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException)
"""What a store can raise (a cluster with every node down raises a non-RedisError)."""


def is_cluster(client: Any) -> bool:
    return isinstance(client, (RedisCluster, aiocluster.RedisCluster))


def _auth(target: Target) -> dict[str, Any]:
    auth: dict[str, Any] = {}
    if target.username is not None:
        auth["username"] = target.username
    if target.password is not None:
        auth["password"] = target.password
    return auth


def make_client(target: Target, socket_timeout: float) -> Any:
    timeouts: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
    if target.kind == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],  # type: ignore[no-untyped-call,unused-ignore]
            ssl=target.ssl,
            retry=Retry(NoBackoff(), 1),
            **timeouts,
            **_auth(target),
            **target.options,
        )
    if target.kind == "sentinel":
        sentinel = Sentinel(list(target.nodes), sentinel_kwargs=dict(timeouts), **timeouts)  # type: ignore[no-untyped-call,unused-ignore]
        client = sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]
            target.master, db=target.db, ssl=target.ssl, **timeouts, **_auth(target), **target.options
        )
        client._tnm_sentinels = sentinel.sentinels  # closed with the client
        return client
    return redis.Redis.from_url(target.url, health_check_interval=0, **timeouts)


def make_async_client(target: Target, socket_timeout: float, max_connections: int) -> Any:
    timeouts: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
    if target.kind == "cluster":
        return aiocluster.RedisCluster(
            startup_nodes=[aiocluster.ClusterNode(host, port) for host, port in target.nodes],
            ssl=target.ssl,
            retry=aioretry.Retry(NoBackoff(), 1),  # the asyncio client takes the asyncio Retry
            max_connections=max_connections,
            **timeouts,
            **_auth(target),
            **target.options,
        )
    if target.kind == "sentinel":
        sentinel = aiosentinel.Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            list(target.nodes), sentinel_kwargs=dict(timeouts), **timeouts
        )
        client = sentinel.master_for(
            target.master, db=target.db, ssl=target.ssl, **timeouts, **_auth(target), **target.options
        )
        client._tnm_sentinels = sentinel.sentinels  # closed with the client
        return client
    # A bounded pool: a burst of concurrent failures waits for a connection
    # (asynchronously) instead of opening hundreds of them.
    pool = aioredis.BlockingConnectionPool.from_url(
        target.url, max_connections=max_connections, timeout=socket_timeout, **timeouts
    )
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool


def close_client(client: Any) -> None:
    """Close a client this backend made (and, for Sentinel, its connections to the sentinels)."""
    client.close()
    for sentinel in getattr(client, "_tnm_sentinels", ()):
        sentinel.close()


async def aclose_client(client: Any) -> None:
    await client.aclose()
    for sentinel in getattr(client, "_tnm_sentinels", ()):
        await sentinel.aclose()
