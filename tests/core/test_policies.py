"""Bad input fails at construction with an error naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tnm.circuit import (
    CircuitBreaker,
    CircuitError,
    CircuitState,
    InvalidConfigError,
    InvalidConfigTypeError,
    ReturnValuePolicy,
    ServicePolicy,
)


class TestServicePolicyValidation:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"window_seconds": 0}, "window_seconds"),
            ({"window_seconds": -5}, "window_seconds"),
            ({"window_seconds": float("nan")}, "window_seconds"),
            ({"window_seconds": "60"}, "window_seconds"),
            ({"max_failures": 0}, "max_failures"),
            ({"max_failures": 2.5}, "max_failures"),
            ({"max_failures": True}, "max_failures"),
            ({"open_seconds": -1}, "open_seconds"),
            ({"half_open_max_calls": 0}, "half_open_max_calls"),
            ({"success_threshold": 0}, "success_threshold"),
            ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
            ({"open_seconds": 10, "max_open_seconds": 5}, "max_open_seconds"),
            ({"trial_timeout_seconds": 0}, "trial_timeout_seconds"),
            ({"ignore_exceptions": [ValueError, "KeyError"]}, "ignore_exceptions"),
            ({"on_exceptions": [int]}, "on_exceptions"),
            ({"on_exceptions": "ValueError"}, "on_exceptions"),
            ({"on_retval_policy": {"retval": None}}, "on_retval_policy"),
            ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
            ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
            ({"failure_rate_threshold": -0.1}, "failure_rate_threshold"),
            ({"failure_rate_threshold": "0.5"}, "failure_rate_threshold"),
            ({"failure_rate_threshold": 0.5, "minimum_calls": 0}, "minimum_calls"),
            ({"minimum_calls": 2.5}, "minimum_calls"),
            ({"slow_call_rate_threshold": 0.5}, "slow_call_rate_threshold"),
            ({"slow_call_seconds": 1, "slow_call_rate_threshold": 0}, "slow_call_rate_threshold"),
            ({"slow_call_seconds": 1, "slow_call_rate_threshold": 2}, "slow_call_rate_threshold"),
            ({"slow_call_seconds": 0}, "slow_call_seconds"),
            ({"slow_call_seconds": -1}, "slow_call_seconds"),
            ({"mode": "dry-run"}, "mode"),
            ({"max_failures": None}, "max_failures"),
            ({"min_failing_processes": 0}, "min_failing_processes"),
            ({"min_failing_processes": 2.5}, "min_failing_processes"),
            ({"min_failing_processes": True}, "min_failing_processes"),
        ],
    )
    def test_invalid_field_is_named(self, kwargs: dict[str, Any], field: str) -> None:
        """Each invalid value raises InvalidConfigError (a CircuitError and ValueError) naming its field."""
        with pytest.raises(InvalidConfigError) as info:
            ServicePolicy(**kwargs)
        assert info.value.field == field
        assert field in str(info.value)
        assert isinstance(info.value, CircuitError)
        assert isinstance(info.value, ValueError)

    def test_rate_fields_accept_their_ranges(self) -> None:
        """Rates in (0, 1], minimum_calls >= 1, both modes, and max_failures=None beside a rate trigger."""
        policy = ServicePolicy(
            max_failures=None,
            failure_rate_threshold=1,
            minimum_calls=1,
            slow_call_seconds=0.5,
            slow_call_rate_threshold=0.25,
            mode="observe",
        )
        assert (policy.failure_rate_threshold, policy.slow_call_rate_threshold) == (1.0, 0.25)
        assert policy.counts_calls
        assert ServicePolicy().mode == "enforce"
        assert not ServicePolicy().counts_calls

    def test_type_errors_are_type_errors(self) -> None:
        """A non-exception class in an exception list is also a TypeError."""
        with pytest.raises(TypeError):
            ServicePolicy(ignore_exceptions=[object])
        with pytest.raises(InvalidConfigTypeError):
            ServicePolicy(window_seconds="1")

    def test_floats_and_defaults(self) -> None:
        """Durations accept floats; open_seconds defaults to window_seconds; lists become tuples."""
        policy = ServicePolicy(window_seconds=1.5, max_failures=2, ignore_exceptions=[KeyError])
        assert policy.open_seconds == 1.5
        assert policy.ignore_exceptions == (KeyError,)
        assert policy.half_open_max_calls == 1
        assert policy.success_threshold == 1
        assert ServicePolicy(window_seconds=1, open_seconds=0.25).open_seconds == 0.25

    def test_single_exception_class_is_accepted(self) -> None:
        """A bare class is taken as a one-element list."""
        assert ServicePolicy(on_exceptions=ConnectionError).on_exceptions == (ConnectionError,)

    def test_backoff_grows_and_is_capped(self) -> None:
        """open_duration multiplies per re-opening and stops at max_open_seconds."""
        policy = ServicePolicy(open_seconds=10, backoff_multiplier=2, max_open_seconds=35)
        assert [policy.open_duration(n) for n in range(4)] == [10, 20, 35, 35]
        assert policy.open_duration(10_000) == 35
        assert ServicePolicy(open_seconds=10).open_duration(5) == 10


class TestReturnValuePolicyValidation:
    def test_no_rule_is_rejected(self) -> None:
        """A ReturnValuePolicy that can never match is a configuration error."""
        with pytest.raises(InvalidConfigError):
            ReturnValuePolicy()
        with pytest.raises(InvalidConfigError):
            ReturnValuePolicy(retval_accessor="status_code")

    def test_bad_fields(self) -> None:
        """Wrong types are named."""
        with pytest.raises(InvalidConfigTypeError) as info:
            ReturnValuePolicy(retval_in="500")
        assert info.value.field == "retval_in"
        with pytest.raises(InvalidConfigError) as info2:
            ReturnValuePolicy(retval=1, retval_accessor="a..b")
        assert info2.value.field == "retval_accessor"

    def test_retval_none_can_be_matched_explicitly(self) -> None:
        """retval=None is a rule (distinct from not giving retval)."""
        assert ReturnValuePolicy(retval=None).failure_reason(None) is not None
        assert ReturnValuePolicy(retval=None).failure_reason(0) is None


class TestBreakerValidation:
    def test_bad_backend(self) -> None:
        """An unknown backend name is named in the error."""
        with pytest.raises(InvalidConfigError) as info:
            CircuitBreaker("memcached")
        assert info.value.field == "backend"

    def test_unknown_backend_option(self) -> None:
        """An option the local backend does not take (a typo, a Redis-only knob) is an error."""
        with pytest.raises(InvalidConfigError, match="socket_timout"):
            CircuitBreaker("local", socket_timout=1)

    def test_misspelled_local_option_is_the_field(self) -> None:
        """A misspelled option on the local backend is reported against its own name, with a hint."""
        with pytest.raises(InvalidConfigError) as info:
            CircuitBreaker("local", redis_urll="redis://127.0.0.1:6379/0")
        assert info.value.field == "redis_urll"
        assert "did you mean 'redis_url'?" in str(info.value)

    def test_misspelled_redis_option_is_the_field(self) -> None:
        """A misspelled Redis option is an InvalidConfigError naming it, not a raw TypeError."""
        with pytest.raises(InvalidConfigError) as info:
            CircuitBreaker("redis", redis_url="redis://127.0.0.1:1/0", sockettimeout=1)
        assert info.value.field == "sockettimeout"
        assert "did you mean 'socket_timeout'?" in str(info.value)

    def test_redis_url_with_local_backend_is_an_error(self) -> None:
        """backend='local' with a redis_url is refused, naming redis_url: it would silently be unused."""
        with pytest.raises(InvalidConfigError) as info:
            CircuitBreaker("local", redis_url="redis://127.0.0.1:6379/0")
        assert info.value.field == "redis_url"
        with pytest.raises(InvalidConfigError):
            CircuitBreaker(backend="local", redis_url="redis://127.0.0.1:6379/0")

    def test_redis_url_alone_selects_redis(self) -> None:
        """Without a backend, a redis_url selects the Redis backend; without either, local."""
        assert CircuitBreaker(redis_url="redis://127.0.0.1:6379/0").backend.name == "redis"
        assert CircuitBreaker().backend.name == "local"
        assert CircuitBreaker(namespace="app", meta_ttl_seconds=60).backend.name == "local"

    def test_bad_policies(self) -> None:
        """service_policies must map names to ServicePolicy objects."""
        with pytest.raises(InvalidConfigTypeError) as info:
            CircuitBreaker(service_policies={"es": {"max_failures": 3}})  # type: ignore[dict-item]
        assert "service_policies['es']" in str(info.value)
        with pytest.raises(InvalidConfigError):
            CircuitBreaker(service_policies={"": ServicePolicy()})
        with pytest.raises(InvalidConfigTypeError):
            CircuitBreaker(default_policy={"max_failures": 1})  # type: ignore[arg-type]

    def test_bad_overrides(self) -> None:
        """Per-call overrides are validated too, when they are resolved."""
        breaker = CircuitBreaker()
        with pytest.raises(InvalidConfigTypeError):
            breaker.protect("svc", on_exceptions=["ValueError"])  # type: ignore[list-item]
        with pytest.raises(InvalidConfigTypeError):
            breaker.protect("svc", fallback=42)  # type: ignore[arg-type]
        with pytest.raises(InvalidConfigTypeError):
            breaker.execute("svc", lambda: 1, on_retval_policy=5)  # type: ignore[arg-type]


class TestServiceNames:
    def test_names_are_exact(self) -> None:
        """my-service, my_service, myservice and My-Service are four circuits."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=1))
        breaker.record_failure("my-service", "x")
        for other in ("my_service", "myservice", "My-Service"):
            assert breaker.is_available(other)
        assert not breaker.is_available("my-service")
        assert [s.service for s in breaker.states()] == sorted(
            ["My-Service", "my-service", "my_service", "myservice"]
        )

    @pytest.mark.parametrize("name", ["", "x" * 201])
    def test_empty_or_long_names_rejected(self, name: str) -> None:
        """Empty and over-long names get a clear error naming 'service'."""
        breaker = CircuitBreaker()
        for use in (breaker.is_available, breaker.protect, breaker.state):
            with pytest.raises(InvalidConfigError) as info:
                use(name)
            assert info.value.field == "service"

    @pytest.mark.parametrize(
        "name", ["   ", "\t", "pay\nments", "pay\rments", "a\x00b", "bell\x07", "del\x7f"]
    )
    def test_blank_or_control_character_names_rejected(self, name: str) -> None:
        """Names of only spaces, or with a newline or other control character, are refused."""
        breaker = CircuitBreaker()
        for use in (breaker.is_available, breaker.protect, breaker.state, breaker.force_open):
            with pytest.raises(InvalidConfigError) as info:
                use(name)
            assert info.value.field == "service"
        with pytest.raises(InvalidConfigError):
            CircuitBreaker(service_policies={name: ServicePolicy()})

    def test_names_with_inner_spaces_and_unicode_are_fine(self) -> None:
        """Printable names, spaces inside and non-ASCII letters included, stay valid."""
        breaker = CircuitBreaker()
        for name in ("payments api", "zahlungsdienst-ä", "支付"):
            assert breaker.is_available(name)

    def test_non_str_name(self) -> None:
        """A non-string name is a type error."""
        with pytest.raises(InvalidConfigTypeError):
            CircuitBreaker().is_available(42)  # type: ignore[arg-type]

    def test_reason_is_bounded(self) -> None:
        """Failure reasons are stored at most 500 characters long."""
        breaker = CircuitBreaker()
        breaker.record_failure("svc", "x" * 10_000)
        last = breaker.last_failure("svc")
        assert last is not None
        assert len(last["reason"]) == 500


class TestWaitBeforeRetry:
    def test_half_open_with_its_trial_running_waits_at_most_the_open_time(self) -> None:
        """A refusal's retry_after, except half-open (the running trial's deadline): at most
        open_seconds; an operator's hold (no deadline) stays None."""
        policy = ServicePolicy(open_seconds=2, trial_timeout_seconds=30)
        assert policy.wait_before_retry(29.5, CircuitState.HALF_OPEN) == 2
        assert policy.wait_before_retry(29.5, "half_open") == 2
        assert policy.wait_before_retry(0.5, "half_open") == 0.5
        assert policy.wait_before_retry(7.0, CircuitState.OPEN) == 7.0
        assert policy.wait_before_retry(None, "forced_open") is None
        assert ServicePolicy(open_seconds=0).wait_before_retry(29.5, "half_open") == 1.0  # never a tight poll
        default_open = ServicePolicy(window_seconds=60)  # (open time: the window)
        assert default_open.wait_before_retry(90.0, "half_open") == 60
