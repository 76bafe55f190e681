"""The pub/sub listener: brings other processes' changes to the mirrors within a millisecond.

It runs on its own thread so that nothing (a refresh of 20,000 circuits, a slow
command) delays a notice. A notice is a hint, never an authority: anyone allowed to
publish on the channel could forge one. So the listener reads the named circuits'
keys (one pipelined script ``read`` for every notice that arrived together, on this
thread, off the call path) and mirrors what the keys hold. A forged or corrupt notice
can at most cause a re-read.

A lost subscription is not an outage: calls keep deciding from the shared state
through the command connection, the listener subscribes again with backoff, and
asks the refresher for a resync, since notices were missed meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError

from ._clients import STORAGE_ERRORS
from ._pipelines import eval_many
from ._policy_registry import policy_notice
from ._script import BadReply, Probe, Reply, parse_message
from ._worker import Worker

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Listener"]

BATCH = 500
"""Notices read from the subscription at most before their circuits are read."""


class Listener(Worker):
    thread_name = "tnm-circuit-listener"

    def __init__(
        self,
        store: Store,
        on_subscribed: Callable[[], None],
        on_policy: Callable[[], None] | None = None,
        on_resubscribed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._on_subscribed = on_subscribed
        """Every mirror must be read again (notices were lost unread)."""
        self._on_policy = on_policy
        """Called for a notice that a fleet policy override changed (the registry is read then)."""
        self._on_resubscribed = on_resubscribed or on_subscribed
        """A subscription started: notices since the last read may have been missed."""
        self.subscribed = threading.Event()

    def noticed(self, data: Any) -> str | None:
        """The service a notice names, if this process mirrors it (else ``None``)."""
        store = self._store
        if self._on_policy is not None and policy_notice(data) is not None:
            self._on_policy()
            return None
        try:
            notice = parse_message(data)
        except Probe:
            return None
        except BadReply as exc:
            store.health.bad_data(None, f"notice on {store.keys.channel}: {exc}")
            return None
        return notice.service if notice.service in store.circuits else None

    def verify(self, services: set[str]) -> None:
        """Read the named circuits' keys and mirror what they hold (one pipeline)."""
        store = self._store
        if store.health.degraded:
            return  # the refresher's recovery reads every mirror
        circuits = [c for c in (store.circuits.get(s) for s in services) if c is not None]
        if not circuits:
            return
        replies = eval_many(store.client(), [(c.keys, c.script_args("read")) for c in circuits])
        for circuit, raw in zip(circuits, replies, strict=True):
            if isinstance(raw, Exception):
                continue  # the refresher's next round reads it (and reports the trouble)
            try:
                circuit.apply(Reply.parse(raw))  # a repair this read made is reported
            except BadReply as exc:
                store.health.bad_data(circuit.service, str(exc))

    def _listen(self, pubsub: Any) -> None:
        """Apply notices until stopped. A PING every ``refresh_interval`` proves the subscription
        alive: a connection whose host vanished without closing it (a failover) stays silent
        forever, and is given up once two PINGs go unanswered."""
        interval = self._store.refresh_interval
        patience = 2 * interval + self._store.socket_timeout
        last_pong = time.monotonic()  # (the subscription just made counts as an answer)
        next_ping = last_pong + interval
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                pubsub.ping()
                next_ping = now + interval
            services: set[str] = set()
            message = pubsub.get_message(timeout=min(0.2, interval))
            for _ in range(BATCH):
                kind = None if message is None else message.get("type")
                if kind == "message":
                    service = self.noticed(message["data"])
                    if service is not None:
                        services.add(service)
                elif kind == "pong":
                    last_pong = time.monotonic()
                if message is None:
                    break
                message = pubsub.get_message(timeout=0)
            if services:
                try:
                    self.verify(services)
                except STORAGE_ERRORS:
                    self._on_subscribed()  # not read: the refresher reads every mirror again
            elif time.monotonic() - last_pong > patience:
                raise ConnectionError("no answer on the subscription")

    def _loop(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._store.client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._store.keys.channel)
                # Notices published before this subscription (since the last read, or while
                # the connection was down) were missed: the refresher reads every mirror
                # again unless the namespace's change counter says none was published.
                # (Asked before ``subscribed`` is set: once it is, the refresher's
                # ``read_done`` stands for a read made after this subscription.)
                self._on_resubscribed()
                self.subscribed.set()
                backoff = 0.05
                self._listen(pubsub)
            except STORAGE_ERRORS:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # a bug must not kill the listener, nor flood the log
                self._store.health.listener_failed()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                self.subscribed.clear()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
