"""CircuitBreakerInterceptor on a sync channel against a real grpc.server on loopback."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, CircuitState
from tnm.circuit.testing import ManualClock, half_open
from tnm.circuit_grpc import CircuitBreakerInterceptor, CircuitOpenRpcError

from .server import EchoServer

MakeBreaker = Callable[..., CircuitBreaker]


def channel_for(breaker: CircuitBreaker, target: str, **options: object) -> grpc.Channel:
    interceptor = CircuitBreakerInterceptor(breaker, target=target, **options)  # type: ignore[arg-type]
    return grpc.intercept_channel(grpc.insecure_channel(target), interceptor)


@pytest.fixture
def breaker(make_breaker: MakeBreaker) -> CircuitBreaker:
    return make_breaker(max_failures=3, open_seconds=30)


@pytest.fixture
def channel(breaker: CircuitBreaker, echo: EchoServer) -> Iterator[grpc.Channel]:
    with channel_for(breaker, echo.target) as channel:
        yield channel


def unary(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary("/echo.Echo/Unary")


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return,attr-defined]
    return grpc.StatusCode.OK


class TestUnary:
    def test_failing_target_opens_its_circuit(
        self, channel: grpc.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """Three UNAVAILABLE calls open the target's circuit; the next call fails at once with
        UNAVAILABLE and never reaches the server."""
        for _ in range(3):
            assert (
                code_of(lambda: unary(channel)(b"code:UNAVAILABLE", timeout=10))
                is grpc.StatusCode.UNAVAILABLE
            )
        with pytest.raises(CircuitOpenRpcError) as caught:
            unary(channel)(b"ok", timeout=10)
        assert echo.hits() == 3
        error = caught.value
        assert isinstance(error, grpc.RpcError)
        assert isinstance(error, CircuitOpenError)
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert f"circuit {echo.target!r} is open" in error.details()
        assert (error.service, error.retry_after) == (echo.target, pytest.approx(30))
        assert isinstance(error.__cause__, CircuitOpenError)  # the breaker's own error
        assert breaker.state(echo.target).last_failure["reason"] == "gRPC UNAVAILABLE"  # type: ignore[index]

    def test_refusal_through_with_call_and_future(
        self, channel: grpc.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """with_call and future() are refused alike: the future is done, its result raises the refusal."""
        breaker.force_open(echo.target)
        with pytest.raises(CircuitOpenRpcError):
            unary(channel).with_call(b"ok", timeout=10)
        future = unary(channel).future(b"ok", timeout=10)
        assert future.done()
        assert isinstance(future.exception(), CircuitOpenRpcError)
        with pytest.raises(CircuitOpenRpcError) as caught:
            future.result()
        assert echo.hits() == 0
        copy = pickle.loads(pickle.dumps(caught.value))
        assert (copy.service, copy.retry_after, copy.code()) == (
            echo.target,
            None,
            grpc.StatusCode.UNAVAILABLE,
        )

    def test_future_outcome_recorded_when_done(
        self, channel: grpc.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """A failed future() call counts once it completes."""
        future = unary(channel).future(b"code:INTERNAL", timeout=10)
        assert future.exception(timeout=10) is not None
        assert breaker.state(echo.target).failures == 1

    def test_answers_are_successes(
        self, channel: grpc.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """NOT_FOUND or INVALID_ARGUMENT is the server answering: nothing counts; the reply is intact."""
        for name in ("NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED"):
            assert code_of(lambda name=name: unary(channel)(f"code:{name}".encode(), timeout=10)).name == name
        assert unary(channel)(b"ok", timeout=10) == b"ok"
        assert breaker.state(echo.target).failures == 0

    def test_deadline_exceeded_counts(
        self, channel: grpc.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """A call past its deadline reaches the caller as DEADLINE_EXCEEDED and counts."""
        assert code_of(lambda: unary(channel)(b"stall", timeout=0.3)) is grpc.StatusCode.DEADLINE_EXCEEDED
        assert breaker.state(echo.target).failures == 1

    def test_dead_target_counts(self, breaker: CircuitBreaker, dead_target: str) -> None:
        """A target that refuses connections fails with UNAVAILABLE until its circuit opens."""
        with channel_for(breaker, dead_target) as channel:
            for _ in range(3):
                assert code_of(lambda: unary(channel)(b"ok", timeout=10)) is grpc.StatusCode.UNAVAILABLE
            with pytest.raises(CircuitOpenRpcError):
                unary(channel)(b"ok", timeout=10)

    def test_custom_failure_codes(self, breaker: CircuitBreaker, echo: EchoServer) -> None:
        """failure_codes replaces the set: NOT_FOUND counts, UNAVAILABLE does not."""
        with channel_for(breaker, echo.target, failure_codes={grpc.StatusCode.NOT_FOUND}) as channel:
            code_of(lambda: unary(channel)(b"code:UNAVAILABLE", timeout=10))
            assert breaker.state(echo.target).failures == 0
            code_of(lambda: unary(channel)(b"code:NOT_FOUND", timeout=10))
        assert breaker.state(echo.target).failures == 1

    def test_half_open_trial_closes(
        self, channel: grpc.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """A half-open circuit lets one trial through; its success closes the circuit."""
        half_open(breaker, echo.target)
        assert unary(channel)(b"ok", timeout=10) == b"ok"
        assert breaker.state(echo.target).state is CircuitState.CLOSED

    def test_reopens_after_open_seconds_only(
        self, channel: grpc.Channel, breaker: CircuitBreaker, clock: ManualClock, echo: EchoServer
    ) -> None:
        """An open circuit refuses until open_seconds passed, then a trial goes to the server."""
        for _ in range(3):
            code_of(lambda: unary(channel)(b"code:RESOURCE_EXHAUSTED", timeout=10))
        clock.advance(29)
        assert code_of(lambda: unary(channel)(b"ok", timeout=10)) is grpc.StatusCode.UNAVAILABLE
        clock.advance(2)
        assert unary(channel)(b"ok", timeout=10) == b"ok"
        assert echo.hits() == 4


class TestStreams:
    def test_stream_failing_after_messages_delivers_them_and_counts(
        self, channel: grpc.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """A unary-stream call that fails after two messages delivers both, then its error, and counts."""
        received: list[bytes] = []
        with pytest.raises(grpc.RpcError) as caught:
            received.extend(channel.unary_stream("/echo.Echo/Stream")(b"2,fail", timeout=10))
        assert received == [b"0", b"1"]
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert breaker.state(echo.target).failures == 1

    def test_whole_stream_is_a_success(
        self, channel: grpc.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """A stream read to its end counts nothing."""
        assert list(channel.unary_stream("/echo.Echo/Stream")(b"3", timeout=10)) == [b"0", b"1", b"2"]
        assert breaker.state(echo.target).failures == 0

    def test_client_streams_count(
        self, channel: grpc.Channel, breaker: CircuitBreaker, echo: EchoServer
    ) -> None:
        """Stream-unary and stream-stream calls go through the circuit too: failures count, and an
        open circuit refuses them without sending."""
        collect = channel.stream_unary("/echo.Echo/Collect")
        chat = channel.stream_stream("/echo.Echo/Chat")
        assert collect(iter([b"a", b"b"]), timeout=10) == b"a,b"
        assert code_of(lambda: collect(iter([b"a", b"fail"]), timeout=10)) is grpc.StatusCode.UNAVAILABLE
        received: list[bytes] = []
        with pytest.raises(grpc.RpcError):
            received.extend(chat(iter([b"x", b"fail"]), timeout=10))
        assert received == [b"x"]
        code_of(lambda: collect(iter([b"fail"]), timeout=10))
        assert breaker.state(echo.target).state is CircuitState.OPEN
        with pytest.raises(CircuitOpenRpcError):
            collect(iter([b"a"]), timeout=10)
        with pytest.raises(CircuitOpenRpcError):
            list(chat(iter([b"a"]), timeout=10))
        assert echo.hits() == 4

    def test_cancelled_stream_gives_its_trial_permit_back(
        self, make_breaker: MakeBreaker, echo: EchoServer
    ) -> None:
        """A half-open trial stream cancelled by the caller records nothing and frees its permit."""
        breaker = make_breaker(max_failures=1, half_open_max_calls=1)
        half_open(breaker, echo.target)
        with channel_for(breaker, echo.target) as channel:
            call = channel.unary_stream("/echo.Echo/Stream")(b"100000", timeout=10)
            assert next(call) == b"0"
            call.cancel()
            # gRPC runs done-callbacks on its own thread: wait for the permit to come back, bounded.
            deadline = time.monotonic() + 10
            while breaker.state(echo.target).trials_in_flight and time.monotonic() < deadline:
                time.sleep(0.01)
            assert breaker.state(echo.target).state is CircuitState.HALF_OPEN
            assert unary(channel)(b"ok", timeout=10) == b"ok"
        assert breaker.state(echo.target).state is CircuitState.CLOSED


class TestPerMethod:
    def test_one_circuit_per_method(self, breaker: CircuitBreaker, echo: EchoServer) -> None:
        """per_method=True: a failing method opens its own circuit, named target and method; another
        method of the same target still goes through."""
        with channel_for(breaker, echo.target, per_method=True) as channel:
            for _ in range(3):
                code_of(lambda: unary(channel)(b"code:UNKNOWN", timeout=10))
            with pytest.raises(CircuitOpenRpcError) as caught:
                unary(channel)(b"ok", timeout=10)
            assert caught.value.service == f"{echo.target}/echo.Echo/Unary"
            assert list(channel.unary_stream("/echo.Echo/Stream")(b"1", timeout=10)) == [b"0"]
        assert breaker.state(f"{echo.target}/echo.Echo/Stream").state is CircuitState.CLOSED
