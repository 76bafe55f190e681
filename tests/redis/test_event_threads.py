"""Which thread runs a listener, as the guide and ``tnm.circuit.events`` say."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tnm.circuit import CircuitBreaker, CircuitEvent, EventKind

from ..redis_server import RedisServer
from .helpers import wait_for

MakeRedisBreaker = Callable[..., CircuitBreaker]
REFRESHER = "tnm-circuit-refresher"


class TestListenerThreads:
    @pytest.mark.slow
    def test_storage_events_come_from_where_the_docs_say(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """An outage is reported by the thread that saw it; recovery and data loss by the refresher thread."""
        breaker = make_redis_breaker(
            use_clock=False, backend_options={"socket_timeout": 0.2, "refresh_interval": 0.1}
        )
        heard: list[tuple[EventKind, str]] = []

        def listener(event: CircuitEvent) -> None:
            heard.append((event.kind, threading.current_thread().name))

        breaker.record_failure("svc", "before")
        breaker.add_listener(listener)
        redis_server.stop()
        breaker.record_failure("svc", "during the outage")  # this thread sees the store fail
        redis_server.start()
        assert wait_for(lambda: breaker.storage_available, 10)
        breaker.remove_listener(listener)
        threads = {kind: name for kind, name in heard if kind.value.startswith("storage_")}
        # Whichever saw the failure first: this thread's call, or the refresher's probe.
        assert threads.pop(EventKind.STORAGE_DEGRADED) in {threading.current_thread().name, REFRESHER}
        assert threads == {
            EventKind.STORAGE_RESET: REFRESHER,  # restarted without persistence: the data is gone
            EventKind.STORAGE_RECOVERED: REFRESHER,
        }
