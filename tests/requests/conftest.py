"""Fixtures for the requests adapter tests: two real upstreams (uvicorn on loopback) and a refused port."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from tnm.circuit import CircuitBreaker
from tnm.circuit_requests import CircuitBreakerAdapter

from ..httpx.upstream import Upstream, refused_port


@pytest.fixture(scope="session")
def _upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    servers = (Upstream(), Upstream())
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def upstream(_upstreams: tuple[Upstream, Upstream]) -> Upstream:
    """A running uvicorn upstream, its request counts cleared."""
    _upstreams[0].reset()
    return _upstreams[0]


@pytest.fixture
def other_upstream(_upstreams: tuple[Upstream, Upstream]) -> Upstream:
    """A second upstream on another port: another circuit."""
    _upstreams[1].reset()
    return _upstreams[1]


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL whose connections are refused."""
    sock = refused_port()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


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
