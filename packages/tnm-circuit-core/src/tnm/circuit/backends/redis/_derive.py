"""An asyncio client built from the connection settings of a sync client the app passed.

A backend given ``client=`` and no ``async_client=`` still needs an asyncio client for
async call paths. A plain ``redis.Redis`` (TCP, TLS or unix socket, on a standard
pool) carries everything needed to open the same connections on asyncio; anything
else (a cluster or sentinel client, a custom pool or connection class, a custom
connect hook) cannot be mirrored faithfully, and the first async call says so with an
``InvalidConfigError`` instead of reading as a storage outage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio import connection as aioconnection

from ...exceptions import InvalidConfigError

__all__ = ["async_client_like"]

_CONNECTIONS: dict[type, type] = {
    redis.Connection: aioconnection.Connection,
    redis.SSLConnection: aioconnection.SSLConnection,
    redis.UnixDomainSocketConnection: aioconnection.UnixDomainSocketConnection,
}

# Plain settings that mean the same on both sides; objects tied to the sync client
# (its retry policy, its maintenance-notification handler...) are left out.
_SETTINGS = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "client_name",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "retry_on_timeout",
        "retry_on_error",
        "health_check_interval",
        "protocol",
    }
)


def _underivable(client: Any, why: str) -> InvalidConfigError:
    return InvalidConfigError(
        "async_client",
        f"async calls need async_client= next to client=: {why} ({type(client).__name__})",
    )


def async_client_like(client: Any, *, max_connections: int, timeout: float) -> Any:
    """A ``redis.asyncio.Redis`` that connects where ``client`` does, with its settings.

    Its pool is bounded by ``max_connections`` (waiting at most ``timeout`` for a free
    connection), like the pools the backend makes from a URL. Raises
    ``InvalidConfigError`` (field ``async_client``) if ``client`` cannot be mirrored.
    """
    pool: Any = getattr(client, "connection_pool", None)
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        raise _underivable(client, "the client given as client= has no standard connection pool")
    connection_class = _CONNECTIONS.get(pool.connection_class)
    if connection_class is None:
        raise _underivable(client, f"its connection class {pool.connection_class.__name__} is not redis-py's")
    given: Mapping[str, Any] = pool.connection_kwargs
    if given.get("redis_connect_func") is not None:
        raise _underivable(client, "it connects through a custom redis_connect_func")
    settings = {k: v for k, v in given.items() if k in _SETTINGS or k.startswith("ssl_")}
    if isinstance(given.get("socket_keepalive_options"), Mapping):
        settings["socket_keepalive_options"] = given["socket_keepalive_options"]
    async_pool = aioredis.BlockingConnectionPool(
        connection_class=connection_class,
        max_connections=max_connections,
        timeout=timeout,
        **settings,
    )
    return aioredis.Redis.from_pool(async_pool)  # the client owns (and closes) its pool
