"""A disabled circuit is untouched: no per-call event; metrics count its calls as outcome="disabled"."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tnm.circuit import CircuitBreaker, CircuitEvent, ServicePolicy
from tnm.circuit.metrics import PrometheusMetrics
from tnm.circuit.testing import ManualClock


def _raise(exc: BaseException) -> None:
    raise exc


async def _araise(exc: BaseException) -> None:
    raise exc


async def _aok() -> int:
    return 1


@pytest.fixture(params=["local", "redis"])
def breaker(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[CircuitBreaker]:
    policy = ServicePolicy(max_failures=2, ignore_exceptions=[KeyError])
    if request.param == "local":
        yield CircuitBreaker(clock=clock, default_policy=policy)
        return
    url = request.getfixturevalue("redis_url")
    shared = CircuitBreaker("redis", clock=clock, redis_url=url, namespace="disabled", default_policy=policy)
    shared.initialize()
    yield shared
    shared.close()


def calls(breaker: CircuitBreaker) -> list[Callable[[], Any]]:
    """Two successes, two failures and one ignored exception through every entry point."""
    protected_ok = breaker.protect("pay")(lambda: 1)
    protected_fail = breaker.protect("pay")(_raise)

    def guarded_fail() -> None:
        with breaker.guard("pay"):
            raise OSError("down")

    return [
        protected_ok,
        lambda: asyncio.run(breaker.execute_async("pay", _aok)),
        lambda: protected_fail(OSError("down")),
        lambda: asyncio.run(breaker.protect("pay")(_araise)(OSError("down"))),
        lambda: breaker.execute("pay", _raise, KeyError("x")),
        guarded_fail,
    ]


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == "tnm_circuit_calls_total" and sample.labels["service"] == "pay":
                out[sample.labels["outcome"]] = sample.value
    return out


class TestDisabledIsUntouched:
    def test_no_per_call_event_and_counted_as_disabled(self, breaker: CircuitBreaker) -> None:
        """Through a disabled circuit no listener sees a success or failure; metrics say disabled."""
        registry = CollectorRegistry()
        PrometheusMetrics(breaker, registry)
        events: list[CircuitEvent] = []
        breaker.add_listener(events.append)
        breaker.disable("pay")
        events.clear()
        for call in calls(breaker):
            with contextlib.suppress(OSError, KeyError):
                call()
        assert events == []
        counted = scrape(registry)
        assert counted["disabled"] == 6
        assert counted["success"] == counted["failure"] == counted["ignored"] == 0
        assert breaker.state("pay").failures == 0

    def test_counts_resume_after_reset(self, breaker: CircuitBreaker) -> None:
        """After reset, calls count as successes and failures again."""
        registry = CollectorRegistry()
        PrometheusMetrics(breaker, registry)
        breaker.disable("pay")
        breaker.execute("pay", lambda: 1)
        breaker.reset("pay")
        breaker.execute("pay", lambda: 1)
        with pytest.raises(OSError):
            breaker.execute("pay", _raise, OSError())
        counted = scrape(registry)
        assert (counted["disabled"], counted["success"], counted["failure"]) == (1, 1, 1)
