"""Fixtures over ``tests.upstream``: two real upstreams and a refused port, for the HTTP client
adapter tests (httpx, requests, aiohttp), which import them into their conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .upstream import Upstream, refused_port


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
