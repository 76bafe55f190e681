"""The breaker answers what adapters need (every service's name, the store's health and place) once."""

from __future__ import annotations

import re
from pathlib import Path

from tnm.circuit import CircuitBreaker
from tnm.circuit.backends import LocalBackend

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = sorted(p.name for p in (ROOT / "packages").iterdir() if p.name != "tnm-circuit-core")


class OtherProcesses(LocalBackend):
    """A local backend that also knows circuits written by other processes (as a shared store does)."""

    def services(self) -> list[str]:
        return sorted({*super().services(), "written-elsewhere"})


class TestServices:
    def test_services_joins_the_store_and_this_process(self) -> None:
        """services() lists the backend's names and this process's circuits, sorted, once each."""
        breaker = CircuitBreaker(OtherProcesses())
        breaker.state("zeta")
        breaker.state("alpha")
        assert breaker.services() == ["alpha", "written-elsewhere", "zeta"]
        assert [s.service for s in breaker.states()] == breaker.services()

    def test_namespace_used_on_the_local_backend(self) -> None:
        """On the local backend, namespace_used() says whether this process made a circuit."""
        breaker = CircuitBreaker()
        assert breaker.namespace_used() is False
        breaker.state("payments")
        assert breaker.namespace_used() is True

    def test_every_backend_describes_where_state_lives(self) -> None:
        """Backend.describe() is part of the protocol: the local backend says "this process"."""
        assert CircuitBreaker().backend.describe() == "this process"


class TestAdaptersStayOnTheProtocol:
    def test_no_adapter_reaches_around_the_backend_protocol(self) -> None:
        """No adapter probes the backend with getattr or lists service names itself."""
        around = re.compile(r"getattr\([^)]*backend|backend\.services\b|backend,\s*\"(degraded|describe)\"")
        found = [
            f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for package in ADAPTERS
            for path in (ROOT / "packages" / package / "src").rglob("*.py")
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if around.search(line)
        ]
        assert found == []
