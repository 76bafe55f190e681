"""What users see of the library itself: error reprs, log output, the version."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from importlib.metadata import version

import pytest

import tnm.circuit
from tnm.circuit import (
    CircuitBackendError,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    InvalidConfigError,
    InvalidConfigTypeError,
    ReturnValuePolicy,
    ReturnValuePolicyError,
    ServicePolicy,
)
from tnm.circuit.testing import ManualClock, trip

from ..redis_server import RedisServer


class TestErrorRepr:
    def test_open_error_repr_reads_like_its_message(self) -> None:
        """repr(CircuitOpenError) is the class name and the readable message, not its raw args."""
        exc = CircuitOpenError(
            "rabbitmq", 1.909123, {"reason": "down", "ts": 1.0}, CircuitState.OPEN, 3, 3, 60.0
        )
        assert repr(exc) == f"CircuitOpenError({str(exc)!r})"
        assert "<CircuitState" not in repr(exc)
        assert "retry after 1.909s" in repr(exc)

    def test_every_error_repr_reads_like_its_message(self) -> None:
        """Each of our errors has a repr of the form Name('message')."""
        errors = [
            InvalidConfigError("window_seconds", "must be > 0"),
            InvalidConfigTypeError("func", "needs a callable"),
            CircuitBackendError("cannot reach Redis at redis://h:6379/0"),
            ReturnValuePolicyError("api", 500, ReturnValuePolicy(retval=500), "returned 500"),
        ]
        for exc in errors:
            assert repr(exc) == f"{type(exc).__name__}({str(exc)!r})"

    def test_config_errors_pickle_with_their_field(self) -> None:
        """InvalidConfigError survives pickling (Celery result backends) with field and message."""
        copy = pickle.loads(pickle.dumps(InvalidConfigError("redis_url", "malformed")))
        assert (copy.field, copy.message, str(copy)) == ("redis_url", "malformed", "redis_url: malformed")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


class TestLogging:
    def test_no_stderr_when_logging_is_unconfigured(self) -> None:
        """An app that configured no logging gets no stray stderr line when a circuit opens."""
        out = _run(
            """
            from tnm.circuit import CircuitBreaker, ServicePolicy
            breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=1))
            try:
                breaker.execute("x", lambda: 1 / 0)
            except ZeroDivisionError:
                pass
            assert not breaker.is_available("x")
            """
        )
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""

    def test_configured_logging_shows_openings_without_dangling_colon(self) -> None:
        """With logging configured, an opening is logged; an empty-message exception shows no colon."""
        out = _run(
            """
            import logging
            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
            from tnm.circuit import CircuitBreaker, ServicePolicy
            class Boom(Exception):
                pass
            def boom():
                raise Boom()
            breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=1))
            try:
                breaker.execute("x", boom)
            except Boom:
                pass
            breaker.force_open("y")
            """
        )
        assert out.returncode == 0, out.stderr
        lines = out.stderr.splitlines()
        assert (
            "WARNING tnm.circuit: circuit 'x' opened (was closed; opened_by=failures); last failure: Boom"
            in lines
        )
        assert not any(line.rstrip().endswith(":") for line in lines)

    def test_library_logger_has_a_null_handler(self) -> None:
        """The tnm.circuit logger carries a NullHandler, as the logging HOWTO asks of libraries."""
        import logging

        handlers = logging.getLogger("tnm.circuit").handlers
        assert any(isinstance(h, logging.NullHandler) for h in handlers)


class TestVersion:
    def test_version_is_the_installed_distribution(self) -> None:
        """tnm.circuit.__version__ is tnm-circuit-core's installed version."""
        assert tnm.circuit.__version__ == version("tnm-circuit-core")


class TestStorageAvailable:
    def test_local_backend_is_always_available(self) -> None:
        """storage_available is True on the local backend, whatever the circuits do."""
        breaker = CircuitBreaker(clock=ManualClock(), default_policy=ServicePolicy(max_failures=1))
        trip(breaker, "svc")
        assert breaker.storage_available is True

    @pytest.mark.slow
    def test_redis_outage_shows_as_unavailable(self, redis_url: str, redis_server: RedisServer) -> None:
        """storage_available turns False while Redis is down and True once it is back."""
        breaker = CircuitBreaker("redis", redis_url=redis_url, namespace="avail", socket_timeout=0.2)
        breaker.initialize()
        try:
            assert breaker.storage_available is True
            redis_server.stop()
            breaker.record_failure("svc", "x")
            assert breaker.storage_available is False
        finally:
            breaker.close()
