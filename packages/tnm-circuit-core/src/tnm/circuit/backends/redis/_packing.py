"""Script runs packed by hiredis, sent over redis-py's own connections.

redis-py encodes each argument of a command in Python before hiredis packs it: for the
script's three dozen arguments that is most of what a failure's round trip costs this
process, and most of the time a process takes to read many circuits. Where hiredis is
installed (the ``[redis]`` extra installs it on CPython) and the client is redis-py's own
(not a test double), a run is packed in one C call and sent as is; the reply is read by
the connection as redis-py reads it (on an asyncio client, written straight to the
connection's stream when it can be: ``_written_at_once``). A run is sent again only if it
never went out whole (``call_packed``): never after a lost reply, whatever the client's retry
policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:
    _pack = None

__all__ = ["acall_packed", "call_packed", "packs_own", "packed_run"]


def packs_own(client: Any) -> bool:
    """Can runs on ``client`` be packed here? hiredis is installed, the connections are
    redis-py's own (not a test double's), text goes out as UTF-8 as hiredis sends it, and no
    client-side cache watches what is sent."""
    if _pack is None:
        return False
    pool = getattr(client, "connection_pool", None)
    connection_class = getattr(pool, "connection_class", None)
    if connection_class is None or not connection_class.__module__.startswith("redis."):
        return False
    options = getattr(pool, "connection_kwargs", {})
    return (
        str(options.get("encoding", "utf-8")).lower().replace("_", "-") in ("utf-8", "utf8")
        and options.get("encoding_errors", "strict") == "strict"
        and getattr(pool, "cache", None) is None
    )


def packed_run(sha: bytes, keys: Sequence[str], args: Sequence[Any]) -> bytes:
    """``EVALSHA sha`` with ``keys`` and ``args``, as the bytes sent (``packs_own`` said yes)."""
    assert _pack is not None
    return _pack((b"EVALSHA", sha, len(keys), *keys, *args))


def call_packed(client: Any, packed: bytes) -> Any:
    """Send one packed command on a pooled connection and return its reply (an error reply
    is raised, as redis-py raises it).

    A connection the server closed before the command went out whole (killed during its
    handshake, or found closed when written to) is opened again once: Redis runs only whole
    commands, so nothing ran. A reply lost after that is never asked for by sending the run
    again: the run may have happened, and a failure or a trial's outcome must not count twice.
    """
    pool = client.connection_pool
    try:
        connection = pool.get_connection()
    except RedisConnectionError:
        connection = pool.get_connection()  # (the pool gave the failed one back)
    try:
        try:
            connection.send_packed_command([packed])
        except RedisConnectionError:
            connection.connect()  # (redis-py dropped the socket)
            connection.send_packed_command([packed])
        return connection.read_response()
    except BaseException as exc:
        if not isinstance(exc, ResponseError):  # an error reply is read whole: still in step
            connection.disconnect()  # a reply may be left on the socket: never hand it on
        raise
    finally:
        pool.release(connection)


def _written_at_once(connection: Any, packed: bytes) -> bool:
    """Write ``packed`` straight to an asyncio connection's stream, if it is open with nothing
    waiting to go out and no health check due. False if nothing went out: not written, or a
    TCP or Unix socket refused the write (asyncio then closes the stream at once, and
    redis-py's own send finds it closed and opens the connection again). Over TLS a refused
    write shows at the read instead, as a lost reply: the run is not sent again, as with
    redis-py's own send.

    Cost: redis-py sends a command under ``asyncio.wait_for`` when the client has a
    ``socket_timeout`` (the breaker's own clients always do), which on CPython 3.10 and 3.11
    makes a task and takes two more turns of the event loop. A run is a few hundred bytes,
    written whole to an idle stream: there is nothing to wait for (the reply's read is
    bounded by ``socket_timeout``, as before).
    """
    writer = getattr(connection, "_writer", None)
    if writer is None or getattr(connection, "health_check_interval", None):
        return False
    transport = writer.transport
    if transport.is_closing() or transport.get_write_buffer_size():
        return False
    writer.write(packed)
    return not transport.is_closing()


async def acall_packed(client: Any, packed: bytes) -> Any:
    """``call_packed`` on an asyncio client (a connection cancelled mid-read is dropped by
    redis-py's own ``read_response``). A run goes out in one write to the connection's stream
    when it can (``_written_at_once``); otherwise through redis-py's own send."""
    pool = client.connection_pool
    try:
        connection = await pool.get_connection()
    except RedisConnectionError:
        connection = await pool.get_connection()
    try:
        if not _written_at_once(connection, packed):
            try:
                await connection.send_packed_command([packed])
            except RedisConnectionError:
                await connection.connect()
                await connection.send_packed_command([packed])
        return await connection.read_response()
    except BaseException as exc:
        if not isinstance(exc, ResponseError):
            await connection.disconnect(nowait=True)
        raise
    finally:
        await pool.release(connection)
