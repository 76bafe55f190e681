"""Many runs of the script at once: pipelined, per node on a Redis Cluster, packed in C.

A full read of a process's circuits (``initialize()``, the refresher's rounds, the
listener's read after subscribing) runs the script once per circuit. They go in pipelines
of a few hundred, each sent before the previous one's replies are read, so that Redis runs
one while this process reads the other.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Generator, Iterable, Sequence
from typing import Any

from redis import exceptions as errors
from redis.exceptions import NoScriptError, ResponseError

from ._clients import STORAGE_ERRORS, is_cluster
from ._packing import packed_run, packs_own
from ._script import SHA, SHA_BYTES, eval_script

__all__ = ["eval_batches", "eval_many"]

Call = tuple[Sequence[str], Sequence[Any]]
"""One run of the script: its keys and its arguments."""

_LOST_CONNECTION = (errors.ConnectionError, errors.TimeoutError)
"""What redis-py's retry policy retries by default (a failover's ``READONLY`` is raised as one)."""


def eval_many(client: Any, calls: Sequence[Call]) -> list[Any]:
    """Run the script once per ``(keys, args)``, pipelined (per node on a Redis Cluster).

    A reply that is an error is returned in its place, so that one bad circuit does not
    fail the others. Calls the pipeline could not serve (a script the server forgot, a
    slot that moved, a node that failed) are run again one by one, which re-sends the
    script or follows the cluster's redirect.
    """
    results = _by_node(client, calls) if is_cluster(client) else _pipeline(client, calls)
    return _run_again_alone(client, calls, results)


def eval_batches(client: Any, batches: Iterable[Sequence[Call]]) -> Generator[list[Any], None, None]:
    """``eval_many`` on each batch in turn: yields each batch's replies in order.

    Over redis-py's own connections with hiredis installed, the next batch is made and sent
    before this one's replies are read: Redis runs it while the caller handles these. A lost
    connection (a pooled connection the server closed, a failover) is retried as the client's
    retry policy says: the first batches on a new connection, later ones one batch at a time
    through ``eval_many``, from the first whose replies were not read (a run sent twice is a
    read twice: nothing else is sent this way). Runs the pipeline could not serve (a script
    the server forgot) are run again once what is in flight is read and the connection given
    back; the rest then go one batch at a time.
    """
    if is_cluster(client) or not packs_own(client):
        for batch in batches:
            yield eval_many(client, batch)
        return
    batches = iter(batches)
    first = list(itertools.islice(batches, 2))
    if not first:
        return
    flight = _InFlight(client)
    unread: list[Sequence[Call]] = []  # after a lost connection: to send again, one by one
    try:
        batch, replies = flight.start(first)
        while True:
            if any(_unserved(reply) for reply in replies):
                done = [(batch, replies), *flight.drain()]
                flight.release()
                for batch, replies in done:
                    yield _run_again_alone(client, batch, replies)
                break
            following = next(batches, None)
            if following is not None:
                try:
                    flight.send(following)
                except _LOST_CONNECTION:
                    unread = [*flight.batches, following]  # (this batch's replies are read)
                    flight.release()
            yield replies
            if unread or not flight.batches:
                break
            try:
                batch, replies = flight.read_oldest()
            except _LOST_CONNECTION:
                unread = list(flight.batches)
                flight.release()
                break
    finally:
        flight.release()
    for batch in itertools.chain(unread, batches):
        yield eval_many(client, batch)


class _InFlight:
    """Batches of packed runs sent on one pooled connection, their replies not read yet."""

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool
        self.connection = self._pool.get_connection()
        self.batches: deque[Sequence[Call]] = deque()
        self._unsure = False
        """A send or a read was under way: the socket may hold replies ``batches`` does not list."""
        self._released = False

    def start(self, first: Sequence[Sequence[Call]]) -> tuple[Sequence[Call], list[Any]]:
        """Send ``first`` and read the first batch's replies, as the client's retry policy says
        (a pooled connection the server closed is opened again and all of it sent again)."""

        def attempt() -> tuple[Sequence[Call], list[Any]]:
            self.batches.clear()
            self._unsure = False
            for batch in first:
                self.send(batch)
            return self.read_oldest()

        return self.connection.retry.call_with_retry(  # type: ignore[no-any-return]
            attempt, lambda _error: self.connection.disconnect()
        )

    def send(self, batch: Sequence[Call]) -> None:
        packed = b"".join([packed_run(SHA_BYTES, keys, args) for keys, args in batch])
        self._unsure = True
        # A health check's PING would take the reply of a batch in flight for its PONG.
        self.connection.send_packed_command([packed], check_health=not self.batches)
        self.batches.append(batch)
        self._unsure = False

    def read_oldest(self) -> tuple[Sequence[Call], list[Any]]:
        self._unsure = True
        replies = _read_replies(self.connection, len(self.batches[0]))
        batch = self.batches.popleft()
        self._unsure = False
        return batch, replies

    def drain(self) -> list[tuple[Sequence[Call], list[Any]]]:
        return [self.read_oldest() for _ in range(len(self.batches))]

    def release(self) -> None:
        """Give the connection back (once): dropped if replies may still be on it."""
        if self._released:
            return
        self._released = True
        if self.batches or self._unsure:
            self.connection.disconnect()  # never hand unread replies to the next command
        self._pool.release(self.connection)


def _pipeline(client: Any, calls: Sequence[Call]) -> list[Any]:
    if calls and packs_own(client):
        flight = _InFlight(client)
        try:
            return flight.start([calls])[1]
        finally:
            flight.release()
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        pipe.evalsha(SHA, len(keys), *keys, *args)
    return list(pipe.execute(raise_on_error=False))


def _read_replies(connection: Any, count: int) -> list[Any]:
    """``count`` replies, an error reply in its place (as a pipeline reads them)."""
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except ResponseError as exc:
            replies.append(exc)
    return replies


def _by_node(client: Any, calls: Sequence[Call]) -> list[Any]:
    """A Redis Cluster: one pipeline per node, for the circuits whose slot it serves."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    for index, (keys, _) in enumerate(calls):
        node = client.get_node_from_key(keys[0])
        groups.setdefault(node.name, (node, []))[1].append(index)
    results: list[Any] = [None] * len(calls)
    for node, indexes in groups.values():
        try:
            replies = _pipeline(client.get_redis_connection(node), [calls[i] for i in indexes])
        except STORAGE_ERRORS:
            continue  # left to the cluster client below, which finds the slot's new owner
        for index, reply in zip(indexes, replies, strict=True):
            results[index] = reply
    return results


def _run_again_alone(client: Any, calls: Sequence[Call], results: list[Any]) -> list[Any]:
    """Run again, one by one, the calls a pipeline could not serve (``results``: their replies)."""
    cluster = is_cluster(client)
    unreachable: dict[str, Exception] = {}  # node -> its error: its other calls are not retried
    for index, reply in enumerate(results):
        if _unserved(reply):
            keys, args = calls[index]
            node = client.get_node_from_key(keys[0]).name if cluster else ""
            if node in unreachable:
                results[index] = unreachable[node]
                continue
            try:
                results[index] = eval_script(client, keys, args)
            except STORAGE_ERRORS as exc:
                results[index] = exc
                if not isinstance(exc, ResponseError):
                    unreachable[node] = exc  # a lost connection: each retry would wait as long
    return results


def _unserved(reply: Any) -> bool:
    """A pipeline's reply that says the run did not happen there (to be run again alone)."""
    return reply is None or isinstance(reply, (NoScriptError, ResponseError, *STORAGE_ERRORS))
