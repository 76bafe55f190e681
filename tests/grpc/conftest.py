"""Fixtures for the gRPC interceptor tests: a real grpc.server on loopback, and a dead target."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..upstream import refused_port
from .server import EchoServer


@pytest.fixture(scope="session")
def _echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def echo(_echo_server: EchoServer) -> EchoServer:
    """The running gRPC server, its call counts cleared."""
    _echo_server.reset()
    return _echo_server


@pytest.fixture
def dead_target() -> Iterator[str]:
    """A loopback target whose connections are refused."""
    sock = refused_port()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
