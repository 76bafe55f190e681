"""A service no longer called costs nothing: the adapter keeps nothing per upstream, and the circuit
is dropped after meta_ttl_seconds unless open, failing or forced, on both backends.

A real upstream serves every request; ``service=`` names a circuit per path, so one loopback server
stands for a hundred upstreams. Time is the breaker's ManualClock.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest
import requests

from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock

from ..upstream import Upstream

TTL = 60.0
POLICY = {"max_failures": 1, "open_seconds": 3600, "window_seconds": 3600}
MakeSession = Callable[..., requests.Session]


def by_path(request: requests.PreparedRequest) -> str:
    return request.path_url


def run(breaker: CircuitBreaker, session: requests.Session, upstream: Upstream, clock: ManualClock) -> None:
    get = session.get
    assert get(f"{upstream.url}/status/503", timeout=10).status_code == 503  # opens its circuit
    breaker.force_open("/forced")
    for n in range(100):
        get(f"{upstream.url}/ok?n={n}", timeout=10)
    assert len(breaker.circuits()) >= 100
    for step in range(2):  # more than a whole meta_ttl_seconds without calling them
        clock.advance(TTL + 1)
        get(f"{upstream.url}/ok?step={step}", timeout=10)
    gc.collect()
    assert set(breaker.circuits()) == {"/status/503", "/forced", "/ok?step=0", "/ok?step=1"}
    assert breaker.state("/status/503").state is CircuitState.OPEN
    assert breaker.state("/forced").state is CircuitState.FORCED_OPEN


class TestUpstreamsNoLongerCalled:
    @pytest.mark.slow
    def test_local(self, make_session: MakeSession, clock: ManualClock, upstream: Upstream) -> None:
        """Local backend: 100 circuits used once are dropped; the open and forced ones stay."""
        breaker = CircuitBreaker(clock=clock, meta_ttl_seconds=TTL, default_policy=ServicePolicy(**POLICY))
        run(breaker, make_session(breaker, service=by_path), upstream, clock)

    @pytest.mark.slow
    def test_redis(
        self,
        make_redis_breaker: Callable[..., CircuitBreaker],
        make_session: MakeSession,
        clock: ManualClock,
        upstream: Upstream,
    ) -> None:
        """Redis backend: the same, this process's memory follows the services it still calls."""
        breaker = make_redis_breaker(backend_options={"meta_ttl_seconds": TTL}, **POLICY)
        run(breaker, make_session(breaker, service=by_path), upstream, clock)
