"""The adapter on the Redis backend: one circuit per upstream, shared by processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tnm.circuit import CircuitBreaker
from tnm.circuit_requests import CircuitOpenRequestError

from ..other_process import POLICY, run_script, until_open
from ..upstream import Upstream
from .conftest import session_for

# Another process: a requests.Session sends the given requests through its own Redis-backed
# breaker and prints each outcome (a status code, or "refused").
OTHER_PROCESS = """
import json, os, sys
import requests
from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_requests import CircuitBreakerAdapter, CircuitOpenRequestError

breaker = CircuitBreaker(
    "redis", redis_url=os.environ["REDIS_URL"], namespace=os.environ["NAMESPACE"],
    default_policy=ServicePolicy(**json.loads(os.environ["POLICY"])),
)
breaker.initialize()
outcomes = []
try:
    with requests.Session() as session:
        session.mount("http://", CircuitBreakerAdapter(breaker))
        for url in sys.argv[1:]:
            try:
                outcomes.append(session.get(url, timeout=10).status_code)
            except CircuitOpenRequestError:
                outcomes.append("refused")
finally:
    breaker.close()
print(json.dumps(outcomes))
"""


def in_other_process(redis_url: str, *urls: str) -> list[Any]:
    return run_script(OTHER_PROCESS, redis_url, *urls)


class TestSharedAcrossProcesses:
    @pytest.mark.slow
    def test_opened_elsewhere_refused_here(
        self, make_redis_breaker: Callable[..., CircuitBreaker], redis_url: str, upstream: Upstream
    ) -> None:
        """Another process's failures open the upstream's circuit for this process too: its next
        request is refused and never reaches the server."""
        breaker = make_redis_breaker(use_clock=False, **POLICY)
        with session_for(breaker) as session:
            assert session.get(f"{upstream.url}/ok", timeout=10).status_code == 200
            failing = f"{upstream.url}/status/503"
            assert in_other_process(redis_url, failing, failing, failing) == [503, 503, "refused"]
            # This process learns of the opening in the background (pub/sub): wait for it, bounded.
            handle = breaker.circuits()[upstream.service]
            until_open(handle)
            with pytest.raises(CircuitOpenRequestError):
                session.get(failing, timeout=10)
        assert (upstream.hits("/ok"), upstream.hits("/status/503")) == (1, 2)

    @pytest.mark.slow
    def test_opened_here_refused_in_a_new_process(
        self, make_redis_breaker: Callable[..., CircuitBreaker], redis_url: str, upstream: Upstream
    ) -> None:
        """A process that starts while the upstream's circuit is open refuses its very first request."""
        breaker = make_redis_breaker(use_clock=False, **POLICY)
        with session_for(breaker) as session:
            for _ in range(2):
                assert session.get(f"{upstream.url}/status/500", timeout=10).status_code == 500
        assert in_other_process(redis_url, f"{upstream.url}/ok") == ["refused"]
        assert upstream.hits() == 2
