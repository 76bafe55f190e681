"""Fixtures for the requests adapter tests: two real upstreams (uvicorn on loopback) and a refused port."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from tnm.circuit import CircuitBreaker
from tnm.circuit_requests import CircuitBreakerAdapter

from ..upstream_fixtures import _upstreams, other_upstream, refused_url, upstream

__all__ = ["_upstreams", "other_upstream", "refused_url", "upstream"]


def session_for(breaker: CircuitBreaker, **options: object) -> requests.Session:
    """A Session whose http:// and https:// requests go through one CircuitBreakerAdapter."""
    session = requests.Session()
    adapter = CircuitBreakerAdapter(breaker, **options)  # type: ignore[arg-type]
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@pytest.fixture
def make_session() -> Iterator[Callable[..., requests.Session]]:
    made: list[requests.Session] = []

    def make(breaker: CircuitBreaker, **options: object) -> requests.Session:
        made.append(session_for(breaker, **options))
        return made[-1]

    yield make
    for session in made:
        session.close()
