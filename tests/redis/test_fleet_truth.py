"""The fleet's view is never silently wrong: faults injected into a real redis-server while
application processes call a service, counting what reached the callers and the service."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy

from ..redis_server import RedisServer
from .helpers import redis_backend, traffic, wait_for

REFRESH = 0.2


def _breaker(url: str, namespace: str, **policy: object) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace=namespace,
        default_policy=ServicePolicy(**policy),  # type: ignore[arg-type]
        refresh_interval=REFRESH,
        socket_timeout=0.2,
    )
    breaker.initialize()
    return breaker


@pytest.mark.slow
class TestTrialOutcomeDuringAnOutage:
    def test_a_trial_that_ended_while_redis_was_paused_frees_the_fleet(
        self, redis_url: str, redis_server: RedisServer, tmp_path: Path
    ) -> None:
        """A trial that succeeds while Redis is paused is reported once Redis answers: every
        process calls the healthy service again within a second, not after trial_timeout."""
        policy = {"max_failures": 1, "open_seconds": 0.3, "trial_timeout_seconds": 30}
        go = tmp_path / "go"
        extra = ("svc", json.dumps(policy), "3", str(go))
        with traffic(redis_url, "trial", 5.0, 2, worker="call_worker", extra=extra) as workers:
            tester = _breaker(redis_url, "trial", **policy)
            try:
                tester.record_failure("svc", "down")
                assert wait_for(lambda: tester.state("svc").state is CircuitState.HALF_OPEN, 5)
                outcome: list[str] = []
                trial = threading.Thread(
                    target=lambda: outcome.append(tester.execute("svc", lambda: time.sleep(1.0) or "ok"))
                )
                trial.start()
                permits = redis_backend(tester).keys.for_service("svc")[2]
                assert wait_for(lambda: redis_server.client().zcard(permits) == 1, 5)
                go.touch()
                time.sleep(0.3)  # the workers are rejected: the permit is taken
                assert redis_server.process is not None
                os.kill(redis_server.process.pid, signal.SIGSTOP)  # the trial ends meanwhile,
                time.sleep(2.0)  # once its process knows Redis is not answering
                os.kill(redis_server.process.pid, signal.SIGCONT)
                back = time.time()
                trial.join(10)
                results = workers.results()
            finally:
                tester.close()
        assert outcome == ["ok"]
        bound = back + 1.0  # 2 x refresh_interval, with room for a loaded machine
        for result in results:
            assert result["foreign"] == []
            assert [t for t in result["rejected"] if t > bound] == []
            assert [t for t in result["ran"] if t > bound]
