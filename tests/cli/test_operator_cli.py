"""What an operator relies on: where options go, what refuses, what --check means, what errors say."""

from __future__ import annotations

import sys

import click
import pytest
from click.testing import CliRunner

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit.testing import trip
from tnm.circuit_cli import BreakerConfig, breaker_options, cli, pass_breaker

from ..redis_server import RedisServer


def app_breaker(url: str, namespace: str = "cli", max_failures: int = 3) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "redis", redis_url=url, namespace=namespace, default_policy=ServicePolicy(max_failures=max_failures)
    )
    breaker.initialize()
    return breaker


class TestOptionsAfterTheCommand:
    @pytest.mark.parametrize(
        "args",
        [
            ["--redis-url", "{url}", "--namespace", "cli", "status"],
            ["status", "--redis-url", "{url}", "--namespace", "cli"],
            ["--namespace", "cli", "status", "--redis-url", "{url}"],
            ["--backend", "redis", "status", "--redis-url", "{url}", "--namespace", "cli"],
        ],
    )
    def test_connection_options_work_before_or_after_the_command(
        self, redis_url: str, args: list[str]
    ) -> None:
        """--redis-url, --namespace and --backend work before or after the subcommand, alike."""
        app = app_breaker(redis_url)
        trip(app, "payments")
        app.close()
        result = CliRunner().invoke(cli, [a.replace("{url}", redis_url) for a in args])
        assert result.exit_code == 0, result.stderr
        assert result.stdout.splitlines()[1].split()[:2] == ["payments", "open"]
        assert result.stderr == ""

    def test_option_after_the_command_wins(self, redis_url: str) -> None:
        """A namespace given after the command overrides the one given before it."""
        app = app_breaker(redis_url, namespace="right")
        app.record_failure("search", "slow")
        app.close()
        result = CliRunner().invoke(
            cli, ["--redis-url", redis_url, "--namespace", "wrong", "status", "--namespace", "right"]
        )
        assert result.exit_code == 0, result.stderr
        assert "search" in result.stdout

    def test_controls_take_the_options_after_the_command(self, redis_url: str) -> None:
        """open SERVICE --redis-url URL changes the fleet's circuit."""
        result = CliRunner().invoke(cli, ["open", "payments", "--redis-url", redis_url, "--namespace", "cli"])
        assert result.exit_code == 0, result.stderr
        app = app_breaker(redis_url)
        try:
            assert app.state("payments").state.value == "forced_open"
        finally:
            app.close()


class TestChangesNeedASharedStore:
    @pytest.mark.parametrize(
        "args",
        [
            ["open", "payments", "--reason", "x"],
            ["disable", "payments"],
            ["close", "payments"],
            ["reset", "payments"],
            ["reset", "--all", "--yes"],
        ],
    )
    def test_local_backend_refuses_changes(self, args: list[str]) -> None:
        """Without a shared store, commands that change state exit 1 and say to pass --redis-url."""
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert "local backend" in result.stderr
        assert "--redis-url" in result.stderr


class TestCheckOnAnUnknownNamespace:
    def test_typo_namespace_exits_3(self, redis_url: str) -> None:
        """status --check on a namespace no breaker ever used exits 3, every time (it writes nothing)."""
        app_breaker(redis_url, namespace="app").close()
        for _ in range(2):
            result = CliRunner().invoke(
                cli, ["--redis-url", redis_url, "--namespace", "typo", "status", "--check"]
            )
            assert result.exit_code == 3, result.output
            assert "no circuits known" in result.stdout
            assert "nothing known" in result.stderr
            assert "'typo'" in result.stderr

    def test_reading_commands_leave_no_trace(self, redis_url: str, redis_server: RedisServer) -> None:
        """watch, close and reset on a namespace no breaker used write nothing: --check still exits 3."""
        runner = CliRunner()
        target = ["--redis-url", redis_url, "--namespace", "typo"]
        assert runner.invoke(cli, [*target, "watch", "--count", "1", "--interval", "0.1"]).exit_code == 0
        for verb in ("close", "reset"):
            refused = runner.invoke(cli, [*target, verb, "payments"])
            assert refused.exit_code == 1
            assert "unknown service 'payments'" in refused.stderr
        assert redis_server.client().keys("typo*") == []
        assert runner.invoke(cli, [*target, "status", "--check"]).exit_code == 3

    def test_check_on_the_local_backend_knows_nothing(self) -> None:
        """status --check without a Redis URL exits 3 and says the local backend shares nothing."""
        result = CliRunner().invoke(cli, ["--namespace", "typo", "status", "--check"])
        assert result.exit_code == 3
        assert "local backend" in result.stderr
        assert "--redis-url" in result.stderr

    def test_allow_empty_exits_0(self, redis_url: str) -> None:
        """--allow-empty turns the unknown-namespace exit 3 into 0."""
        result = CliRunner().invoke(
            cli, ["--redis-url", redis_url, "--namespace", "typo", "status", "--check", "--allow-empty"]
        )
        assert result.exit_code == 0, result.output
        assert result.stderr == ""

    def test_quiet_fleet_with_expired_keys_is_healthy(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """A namespace a breaker used, whose circuit keys have all expired, passes --check (exit 0)."""
        app = app_breaker(redis_url, namespace="app")
        app.record_failure("search", "slow")
        app.close()
        client = redis_server.client()
        for key in client.scan_iter(match="app:{*"):
            client.delete(key)
        result = CliRunner().invoke(
            cli, ["--redis-url", redis_url, "--namespace", "app", "status", "--check"]
        )
        assert result.exit_code == 0, result.output
        assert "no circuits known in this namespace" in result.stdout

    def test_json_of_an_unknown_namespace_is_empty(self, redis_url: str) -> None:
        """status --json on an unknown namespace prints an empty list (exit 0 without --check)."""
        result = CliRunner().invoke(
            cli, ["--redis-url", redis_url, "--namespace", "typo", "status", "--json"]
        )
        assert result.exit_code == 0
        assert result.stdout.strip() == "[]"

    def test_help_documents_exit_3(self) -> None:
        """status --help lists exit status 3 and --allow-empty."""
        text = CliRunner().invoke(cli, ["status", "--help"]).stdout
        assert "3  status --check only: nothing known" in text
        assert "--allow-empty" in text


class TestRedisExtraMissing:
    @pytest.fixture
    def no_redis_py(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """redis-py cannot be imported (as after pip install tnm-circuit-cli without [redis])."""
        monkeypatch.setitem(sys.modules, "redis", None)
        for name in [m for m in sys.modules if m.startswith("tnm.circuit.backends.redis")]:
            monkeypatch.delitem(sys.modules, name)

    @pytest.mark.usefixtures("no_redis_py")
    def test_redis_url_names_the_cli_extra(self) -> None:
        """--redis-url without redis-py names --redis-url and the [redis] extra, not --backend."""
        result = CliRunner().invoke(cli, ["--redis-url", "redis://127.0.0.1:1/0", "status"])
        assert result.exit_code == 1
        assert result.stdout == ""
        assert "--redis-url" in result.stderr
        assert "tnm-circuit-cli[redis]" in result.stderr
        assert "--backend" not in result.stderr


class TestDisableKeepsTheAppsThreshold:
    def test_status_after_disable_shows_the_apps_threshold(self, redis_url: str) -> None:
        """After disable, status shows the app's threshold (0/3), not the CLI's default (5)."""
        app = app_breaker(redis_url, max_failures=3)
        app.record_failure("payments", "x")
        app.record_success("payments")
        app.close()
        runner = CliRunner()
        done = runner.invoke(cli, ["--redis-url", redis_url, "--namespace", "cli", "disable", "payments"])
        assert done.exit_code == 0, done.stderr
        status = runner.invoke(cli, ["--redis-url", redis_url, "--namespace", "cli", "status"])
        header, line = status.stdout.splitlines()[:2]
        starts = [header.index(name) for name in ("SERVICE", "STATE", "OPENED BY", "FAILURES", "PROCESSES")]
        columns = ("SERVICE", "STATE", "OPENED BY", "FAILURES")
        row = {name: line[a:b].strip() for name, a, b in zip(columns, starts[:-1], starts[1:], strict=True)}
        assert (row["SERVICE"], row["STATE"], row["FAILURES"]) == ("payments", "disabled", "0/3")


class TestPasswordNeeded:
    def test_missing_password_is_said_plainly(self) -> None:
        """A Redis that needs a password, reached without one, says the URL needs a password."""
        server = RedisServer(password="s3cret-pw")
        server.start()
        try:
            url = f"redis://127.0.0.1:{server.port}/0"
            result = CliRunner().invoke(cli, ["--redis-url", url, "status"])
        finally:
            server.cleanup()
        assert result.exit_code == 1
        assert result.stdout == ""
        assert "needs a password (or ACL user) in the URL" in result.stderr
        assert "s3cret-pw" not in result.output


class TestHelpersLeaveCtxObjAlone:
    def test_users_ctx_obj_survives(self) -> None:
        """breaker_options keeps its config in ctx.meta: the application's ctx.obj is untouched."""
        seen: list[object] = []

        @click.group()
        @breaker_options
        @click.pass_context
        def app(ctx: click.Context) -> None:
            ctx.obj = {"db": "mine"}

        @app.command()
        @click.pass_context
        @pass_breaker
        def work(breaker: CircuitBreaker, ctx: click.Context) -> None:
            seen.append(ctx.obj)
            seen.append(breaker.backend.name)
            seen.append(BreakerConfig.of(ctx))

        result = CliRunner().invoke(app, ["work"], obj={"db": "given"})
        assert result.exit_code == 0, result.output
        assert seen[0] == {"db": "mine"}
        assert seen[1] == "local"
        assert isinstance(seen[2], BreakerConfig)

    def test_obj_passed_to_main_is_kept(self) -> None:
        """An obj given to the command (main(obj=...)) is still ctx.obj inside the command."""
        seen: list[object] = []

        @click.command()
        @breaker_options
        @click.pass_obj
        def work(obj: object) -> None:
            seen.append(obj)

        result = CliRunner().invoke(work, [], obj={"app": 1})
        assert result.exit_code == 0, result.output
        assert seen == [{"app": 1}]
