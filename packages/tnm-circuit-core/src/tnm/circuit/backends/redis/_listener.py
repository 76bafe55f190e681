"""The pub/sub listener: applies other processes' changes to the mirrors within a millisecond.

It runs on its own thread so that nothing (a refresh of 20,000 circuits, a slow
command) delays a notice. A lost subscription is not an outage: calls keep deciding
from the shared state through the command connection, the listener subscribes again
with backoff, and asks the refresher for a resync, since notices were missed
meanwhile. Notices that do not parse, or that claim a time far beyond the server's,
are ignored (with a rate-limited warning): one bad message cannot pin a mirror.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError

from ._clients import STORAGE_ERRORS
from ._script import BadReply, Probe, parse_message
from ._worker import Worker

if TYPE_CHECKING:
    from ._backend import RedisBackend

__all__ = ["Listener"]

FUTURE_TOLERANCE_MS = 5000.0
"""A notice stamped later than this beyond the server's current time is forged or corrupt."""


class Listener(Worker):
    thread_name = "tnm-circuit-listener"

    def __init__(self, backend: RedisBackend) -> None:
        super().__init__()
        self.backend = backend
        self.subscribed = threading.Event()

    def on_message(self, data: Any) -> None:
        backend = self.backend
        try:
            notice = parse_message(data)
        except Probe:
            return
        except BadReply as exc:
            backend.health.bad_data(None, f"notice on {backend.keys.channel}: {exc}")
            return
        if notice.now_ms > backend.server_ms_now() + FUTURE_TOLERANCE_MS:
            backend.health.bad_data(None, f"notice for {notice.service!r} dated in the future; ignored")
            return
        circuit = backend.circuits.get(notice.service)
        if circuit is not None and not backend.health.degraded:
            circuit.mirror(
                notice.state,
                notice.open_until_ms,
                notice.failures,
                notice.now_ms,
                notice.permits,
                notice.earliest_permit_ms,
                notice.version,
            )

    def _listen(self, pubsub: Any) -> None:
        """Apply notices until stopped. A PING every ``refresh_interval`` proves the subscription
        alive: a connection whose host vanished without closing it (a failover) stays silent
        forever, and is given up once two PINGs go unanswered."""
        interval = self.backend.refresh_interval
        patience = 2 * interval + self.backend.socket_timeout
        last_pong = next_ping = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                pubsub.ping()
                next_ping = now + interval
            message = pubsub.get_message(timeout=min(0.2, interval))
            kind = None if message is None else message.get("type")
            if kind == "message":
                self.on_message(message["data"])
            elif kind == "pong":
                last_pong = time.monotonic()
            elif time.monotonic() - last_pong > patience:
                raise ConnectionError("no answer on the subscription")

    def _loop(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.backend.client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.backend.keys.channel)
                self.subscribed.set()
                # Notices published before this subscription (since the last read, or while
                # the connection was down) were missed: read every mirror again.
                self.backend.refresher.resync_soon()
                backoff = 0.05
                self._listen(pubsub)
            except STORAGE_ERRORS:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # a bug must not kill the listener, nor flood the log
                self.backend.health.listener_failed()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                self.subscribed.clear()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
