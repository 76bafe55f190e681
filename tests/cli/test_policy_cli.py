"""``tnm-circuit policy``: show, set and clear fleet policy overrides against a real Redis."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_cli import cli

from ..redis.helpers import wait_for


def app_breaker(url: str, max_failures: int = 5) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace="cli",
        default_policy=ServicePolicy(max_failures=max_failures),
        refresh_interval=0.1,
    )
    breaker.initialize()
    return breaker


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


class TestPolicySet:
    def test_set_reaches_a_running_process(self, redis_url: str) -> None:
        """policy set stores the fields given; a running process applies them (source fleet)."""
        app = app_breaker(redis_url)
        try:
            app.execute("payments", lambda: None)
            code, out, err = run(
                "policy", "set", "payments", "--max-failures", "3", "--open-seconds", "20",
                "--redis-url", redis_url, "--namespace", "cli",
            )  # fmt: skip
            assert code == 0, err
            assert "payments" in out
            assert wait_for(lambda: app.policy_source("payments") == "fleet", 5)
            policy = app.policy_for("payments")
            assert (policy.max_failures, policy.open_seconds) == (3, 20)
            assert app.policy_overrides() == {"payments": {"max_failures": 3, "open_seconds": 20.0}}
        finally:
            app.close()

    @pytest.mark.parametrize(
        ("args", "named"),
        [
            (["--max-failures", "0"], "--max-failures"),
            (["--failure-rate-threshold", "1.5"], "--failure-rate-threshold"),
            (["--backoff-multiplier", "0.5"], "--backoff-multiplier"),
            (["--window-seconds", "-1"], "--window-seconds"),
        ],
    )
    def test_bad_value_refused_naming_the_option(self, redis_url: str, args: list[str], named: str) -> None:
        """An invalid value exits 1 naming its option, and nothing is stored."""
        code, _, err = run("--redis-url", redis_url, "--namespace", "cli", "policy", "set", "payments", *args)
        assert code == 1
        assert named in err
        app = app_breaker(redis_url)
        try:
            assert app.policy_overrides() == {}
        finally:
            app.close()

    def test_fields_checked_one_by_one_and_stored_as_given(self, redis_url: str) -> None:
        """A field whose partner lives in the processes' code (a slow-call rate) is stored as
        given: the command has no code policy to refuse it on, and warns of nothing."""
        code, _, err = run(
            "policy", "set", "payments", "--slow-call-rate-threshold", "0.5", "--redis-url", redis_url,
            "--namespace", "cli",
        )  # fmt: skip
        assert code == 0, err
        assert err == ""
        app = app_breaker(redis_url)
        try:
            assert app.policy_overrides() == {"payments": {"slow_call_rate_threshold": 0.5}}
        finally:
            app.close()

    def test_no_field_is_a_usage_error(self, redis_url: str) -> None:
        """policy set with no field to change exits 2 and stores nothing."""
        code, _, err = run("policy", "set", "payments", "--redis-url", redis_url)
        assert code == 2
        assert "at least one field" in err


class TestPolicyShowAndClear:
    def test_show_json_and_clear(self, redis_url: str) -> None:
        """policy show --json lists the override and source; policy clear removes it everywhere."""
        app = app_breaker(redis_url)
        try:
            app.execute("payments", lambda: None)
            app.execute("search", lambda: None)
            assert run("policy", "set", "payments", "--mode", "observe", "--redis-url", redis_url,
                       "--namespace", "cli")[0] == 0  # fmt: skip
            code, out, err = run("policy", "show", "--json", "--redis-url", redis_url, "--namespace", "cli")
            assert code == 0, err
            rows = {row["service"]: row for row in json.loads(out)}
            assert rows["payments"]["source"] == "fleet"
            assert rows["payments"]["override"] == {"mode": "observe"}
            assert rows["search"]["source"] == "code"
            code, out, err = run("policy", "show", "payments", "--redis-url", redis_url, "--namespace", "cli")
            assert code == 0, err
            assert "source=fleet" in out
            assert "mode=observe" in out
            assert wait_for(lambda: app.policy_for("payments").mode == "observe", 5)
            code, out, err = run(
                "--redis-url", redis_url, "--namespace", "cli", "policy", "clear", "payments"
            )
            assert code == 0, err
            assert wait_for(lambda: app.policy_source("payments") == "code", 5)
            assert app.policy_for("payments").mode == "enforce"
        finally:
            app.close()


class TestNeedsRedis:
    @pytest.mark.parametrize(
        "args",
        [
            ["policy", "set", "payments", "--max-failures", "3"],
            ["policy", "clear", "payments"],
            ["policy", "show"],
        ],
    )
    def test_local_backend_refused(self, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
        """Without Redis each policy command exits 1, saying why."""
        monkeypatch.delenv("TNM_CIRCUIT_REDIS_URL", raising=False)
        code, out, err = run(*args)
        assert code == 1
        assert out == ""
        assert "cannot be changed from outside it" in err
