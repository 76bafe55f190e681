"""What Redis runs for the breaker: reads at start-up, commands inside a failure's script."""

from __future__ import annotations

import time
from collections.abc import Callable

from tnm.circuit import CircuitBreaker

from ..redis_server import RedisServer
from .helpers import redis_backend, script_calls, wait_for, wait_until_listening

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


def commands_run(server: RedisServer) -> int:
    """Commands the server ran, scripts' and clients' alike, EVALSHA/EVAL and INFO aside."""
    stats = server.client().info("commandstats")
    skip = {"cmdstat_evalsha", "cmdstat_eval", "cmdstat_info", "cmdstat_ping"}
    return sum(int(v["calls"]) for k, v in stats.items() if k not in skip)


class TestScriptCost:
    def test_a_failure_while_closed_runs_few_commands_inside_redis(
        self, make_redis_breaker: MakeRedisBreaker, redis_server: RedisServer
    ) -> None:
        """A failure on a closed circuit that already has failures runs at most 11 commands inside
        Redis (the server's time, one read, the failure's add, trim and count, one write, and
        whether failures existed; and the fleet's reporters: this process's mark, its trim,
        one read of the set and its expiry): no TYPE, permit read or state expiry push on
        every failure."""
        app = make_redis_breaker(
            use_clock=False, max_failures=10**6, backend_options={"refresh_interval": 60}
        )
        assert wait_until_listening(redis_server, app)
        app.record_failure("svc", "down")  # the first one makes the keys
        before_scripts, before = script_calls(redis_server), commands_run(redis_server)
        for _ in range(20):
            app.record_failure("svc", "down")
        # The listener re-reads the circuit when the first failure's notice arrives, which may
        # land in this window: one script run more, its read (at most 8 commands) allowed for.
        extra = script_calls(redis_server) - before_scripts - 20
        assert extra in (0, 1)
        # (a few more allowed for the background threads' own commands meanwhile, fewer than
        # one more per failure)
        assert commands_run(redis_server) - before <= 11 * 20 + 15 + 8 * extra
