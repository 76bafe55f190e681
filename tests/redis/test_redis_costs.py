"""What Redis runs for the breaker: reads at start-up, commands inside a failure's script."""

from __future__ import annotations

import time
from collections.abc import Callable

from tnm.circuit import CircuitBreaker

from ..redis_server import RedisServer
from .helpers import redis_backend, script_calls, wait_for

MakeRedisBreaker = Callable[..., CircuitBreaker]


class TestStartUp:
    def test_initialize_and_the_first_subscription_read_each_circuit_once(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """Circuits made before initialize() are read once in all, not again when the
        listener first subscribes (nothing was published in between)."""
        app = make_redis_breaker(initialize=False, use_clock=False)
        for n in range(40):
            app.protect(f"svc-{n}")(lambda: None)
        before = script_calls(redis_server)
        app.initialize()
        backend = redis_backend(app)
        assert wait_for(backend.listener.subscribed.is_set)
        time.sleep(0.3)  # the round the subscription asks for
        assert wait_for(backend.refresher.read_done.is_set)
        # 40 reads, besides the probe initialize() runs to check the grants (and the script
        # loaded once): not 80
        assert 40 <= script_calls(redis_server) - before <= 43

    def test_a_change_missed_before_the_subscription_is_read(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A circuit changed between initialize()'s read and the subscription is read again."""
        app = make_redis_breaker(initialize=False, use_clock=False, max_failures=1)
        app.protect("svc")(lambda: None)
        backend = redis_backend(app)
        backend.refresher.sync(backend.store.client())  # initialize()'s read, threads not started
        make_redis_breaker(use_clock=False, max_failures=1).record_failure("svc", "down")
        app.initialize()
        assert wait_for(lambda: app.state("svc").state.value == "open")
        assert wait_for(lambda: backend.store.circuits["svc"].state.value == "open")
