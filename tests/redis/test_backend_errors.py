"""CircuitBackendError says which service it concerns and keeps its cause, secrets masked."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tnm.circuit import CircuitBackendError, CircuitBreaker

SECRET = "s3cr3t-pw"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable() -> Iterator[CircuitBreaker]:
    """A breaker whose Redis refuses connections and which is told to raise."""
    breaker = CircuitBreaker(
        "redis",
        redis_url=f"redis://:{SECRET}@127.0.0.1:{_closed_port()}/0",
        on_storage_error="raise",
        socket_timeout=0.2,
        warn_interval=0,
    )
    yield breaker
    breaker.close()


class TestBackendErrorDetails:
    def test_a_rejected_call_names_its_service(self, unreachable: CircuitBreaker) -> None:
        """A call refused because the store is down raises an error whose ``service`` is the call's."""
        with pytest.raises(CircuitBackendError) as info:
            unreachable.execute("payments", lambda: "never")
        assert info.value.service == "payments"
        assert SECRET not in str(info.value)

    def test_a_failed_reset_names_its_service(self, unreachable: CircuitBreaker) -> None:
        """``reset`` while the store is down raises an error whose ``service`` is the one reset."""
        unreachable.is_available("payments")  # the store is now known to be down
        with pytest.raises(CircuitBackendError) as info:
            unreachable.reset("payments")
        assert info.value.service == "payments"

    def test_initialize_chains_the_masked_cause(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``initialize`` failing keeps Redis's error as the cause, of its own type, with secrets masked."""
        client = redis.Redis(host="127.0.0.1", port=_closed_port(), password=SECRET, socket_timeout=0.2)

        def ping() -> None:
            raise RedisConnectionError(f"refused for password {SECRET}")

        monkeypatch.setattr(client, "ping", ping)
        breaker = CircuitBreaker("redis", client=client)
        with pytest.raises(CircuitBackendError) as info:
            breaker.initialize()
        cause = info.value.__cause__
        assert isinstance(cause, RedisConnectionError)
        assert "refused for password" in str(cause)
        assert SECRET not in str(cause)
        assert SECRET not in str(info.value)
        assert info.value.service is None
        assert cause.__traceback__ is not None

    def test_error_pickles_with_its_service(self) -> None:
        """A CircuitBackendError survives pickling (Celery's result backend) with its ``service``."""
        copy = pickle.loads(pickle.dumps(CircuitBackendError("store down", service="pg")))
        assert (str(copy), copy.service) == ("store down", "pg")


class TestOperatorOverrideCause:
    @pytest.mark.parametrize("act", ["force_open", "disable", "reset"])
    def test_override_failure_chains_the_store_error(self, act: str) -> None:
        """force_open (and disable, reset) while a real Redis is down raise CircuitBackendError with
        ``service`` and Redis's own error as ``__cause__``, its text free of the password."""
        from ..redis_server import RedisServer

        server = RedisServer(password=SECRET)
        server.start()
        breaker = CircuitBreaker("redis", redis_url=server.url, socket_timeout=0.3, warn_interval=0)
        try:
            breaker.initialize()
            breaker.record_failure("payments", "x")
            server.stop()  # the store goes away while the app runs
            with pytest.raises(CircuitBackendError) as info:
                getattr(breaker, act)("payments", *(() if act == "reset" else ("maintenance",)))
        finally:
            breaker.close()
            server.cleanup()
        assert info.value.service == "payments"
        cause = info.value.__cause__
        assert isinstance(cause, redis.RedisError)
        assert str(cause)
        assert SECRET not in str(cause)
        assert SECRET not in str(info.value)
