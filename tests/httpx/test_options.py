"""Service names, failure statuses and the rejection error, without a server."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import httpx
import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, InvalidConfigError, InvalidConfigTypeError
from tnm.circuit_httpx import (
    DEFAULT_FAILURE_STATUSES,
    AsyncCircuitBreakerTransport,
    CircuitBreakerTransport,
    CircuitOpenRequestError,
    authority,
)

from ..http_tables import AUTHORITIES

MakeBreaker = Callable[..., CircuitBreaker]


class TestAuthority:
    @pytest.mark.parametrize(
        ("url", "name"),
        [
            *AUTHORITIES,
            ("wss://stream.example.com/", "stream.example.com:443"),
        ],
    )
    def test_host_and_port(self, url: str, name: str) -> None:
        """The name is host:port with the scheme's port filled in, whatever the path or query."""
        assert authority(httpx.Request("GET", url)) == name

    def test_no_host_no_name(self) -> None:
        """A URL without a host has no authority (the transports send such a request unguarded)."""
        assert authority(httpx.Request("GET", "/orders")) == ""

    def test_userinfo_never_in_the_name(self) -> None:
        """A user name and password in the URL do not reach the service name."""
        assert authority(httpx.Request("GET", "https://bob:s3cret@api.example.com/")) == "api.example.com:443"


class TestSecrets:
    def test_credentials_stay_out_of_names_reasons_and_errors(
        self, make_breaker: MakeBreaker, refused_url: str
    ) -> None:
        """With credentials in the URL, the circuit, its failure reason and the rejection never show them."""
        breaker = make_breaker(max_failures=1)
        url = refused_url.replace("http://", "http://bob:s3cret@")
        with httpx.Client(transport=CircuitBreakerTransport(breaker), timeout=10.0) as client:
            with pytest.raises(httpx.ConnectError):
                client.get(url)
            with pytest.raises(CircuitOpenRequestError) as caught:
                client.get(url)
        (snapshot,) = breaker.states()
        shown = [str(caught.value), repr(caught.value), repr(snapshot.to_dict())]
        assert not any("s3cret" in text or "bob" in text for text in shown)


class TestFailureStatuses:
    def test_default_set(self) -> None:
        """The default failure statuses are 429 and the 5xx that mean down or overloaded."""
        assert frozenset({429, 500, 502, 503, 504}) == DEFAULT_FAILURE_STATUSES

    @pytest.mark.parametrize("statuses", [[700], [99]])
    def test_out_of_range_status(self, make_breaker: MakeBreaker, statuses: list[int]) -> None:
        """A number that is no HTTP status fails at construction, naming the option."""
        with pytest.raises(InvalidConfigError) as caught:
            CircuitBreakerTransport(make_breaker(), failure_statuses=statuses)
        assert caught.value.field == "failure_statuses"

    @pytest.mark.parametrize("statuses", ["500", [500.0], [True], 500])
    def test_wrong_type(self, make_breaker: MakeBreaker, statuses: object) -> None:
        """Statuses must be a collection of ints."""
        with pytest.raises(InvalidConfigTypeError):
            AsyncCircuitBreakerTransport(make_breaker(), failure_statuses=statuses)  # type: ignore[arg-type]

    def test_empty_set_leaves_responses_to_the_policy(self, make_breaker: MakeBreaker) -> None:
        """failure_statuses=() makes no status a failure (the policy's own on_retval_policy would judge)."""
        breaker = make_breaker(max_failures=1)
        inner = httpx.MockTransport(lambda request: httpx.Response(500))
        transport = CircuitBreakerTransport(breaker, transport=inner, failure_statuses=())
        with httpx.Client(transport=transport) as client:
            assert [client.get("http://upstream.test/").status_code for _ in range(3)] == [500] * 3


class TestOtherOptions:
    def test_breaker_must_be_a_breaker(self) -> None:
        """Passing something else than a CircuitBreaker fails at construction."""
        with pytest.raises(InvalidConfigTypeError) as caught:
            CircuitBreakerTransport(object())  # type: ignore[arg-type]
        assert caught.value.field == "breaker"

    def test_service_must_be_str_or_callable(self, make_breaker: MakeBreaker) -> None:
        """service= takes a name or a function of the request."""
        with pytest.raises(InvalidConfigTypeError) as caught:
            CircuitBreakerTransport(make_breaker(), service=42)  # type: ignore[arg-type]
        assert caught.value.field == "service"
        with pytest.raises(InvalidConfigError) as empty:
            CircuitBreakerTransport(make_breaker(), service="")
        assert empty.value.field == "service"

    def test_hostless_request_gets_httpx_own_error(self, make_breaker: MakeBreaker) -> None:
        """A URL without a host is not guarded: httpx's own error says what is wrong."""
        breaker = make_breaker()
        with CircuitBreakerTransport(breaker) as transport, pytest.raises(httpx.UnsupportedProtocol):
            transport.handle_request(httpx.Request("GET", "api.example.com/orders"))
        assert breaker.states() == []


class TestRejectionError:
    def make(self) -> CircuitOpenRequestError:
        request = httpx.Request("GET", "https://api.example.com/orders")
        return CircuitOpenRequestError.from_open_error(
            CircuitOpenError(
                "api.example.com:443", 12.5, {"reason": "HTTP 503", "ts": 1.0}, "open", 5, 5, 60.0
            ),
            request,
        )

    def test_carries_both_sides(self) -> None:
        """It has httpx's .request and the circuit's .service, .retry_after and .last_failure."""
        error = self.make()
        assert isinstance(error, httpx.TransportError)
        assert isinstance(error, CircuitOpenError)
        assert error.request.url == "https://api.example.com/orders"
        assert (error.service, error.retry_after, error.failures) == ("api.example.com:443", 12.5, 5)
        assert error.last_failure == {"reason": "HTTP 503", "ts": 1.0}
        assert "api.example.com:443" in str(error)

    def test_pickles(self) -> None:
        """It survives pickling with its fields and its request (for process pools and task queues)."""
        copy = pickle.loads(pickle.dumps(self.make()))
        assert (copy.service, copy.retry_after, copy.request.url) == (
            "api.example.com:443",
            12.5,
            "https://api.example.com/orders",
        )
