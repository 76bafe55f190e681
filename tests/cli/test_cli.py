"""The tnm-circuit command and the Click helpers, through CliRunner and real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock, trip
from tnm.circuit_cli import WorkerExit, breaker_options, cli, pass_breaker, run_worker

from ..redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def redis_args(url: str, namespace: str = "cli") -> list[str]:
    return ["--backend", "redis", "--redis-url", url, "--namespace", namespace]


_seeded: list[CircuitBreaker] = []


def seed(url: str, namespace: str = "cli") -> CircuitBreaker:
    """An app's breaker on the test's Redis (closed after the test)."""
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace=namespace,
        default_policy=ServicePolicy(max_failures=2, open_seconds=60),
    )
    breaker.initialize()
    _seeded.append(breaker)
    return breaker


@pytest.fixture(autouse=True)
def _close_seeded() -> Iterator[None]:
    yield
    while _seeded:
        _seeded.pop().close()


class TestStatus:
    def test_local_backend_has_nothing_shared(self) -> None:
        """On the local backend, status says there is no shared state."""
        result = CliRunner().invoke(cli, ["status"])
        assert result.exit_code == 0
        assert "no circuits known" in result.stdout

    def test_table_json_and_check(self, redis_url: str) -> None:
        """status shows a table, --json the same data, --check exits 2 while one is open."""
        app = seed(redis_url)
        trip(app, "payments", reason="gateway timeout")
        app.record_failure("search", "slow")
        app.close()
        runner = CliRunner()
        table = runner.invoke(cli, [*redis_args(redis_url), "status"])
        assert table.exit_code == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["SERVICE", "STATE", "FAILURES", "RETRY", "IN", "LAST", "FAILURE", "AGE"]
        assert lines[1].split()[:3] == ["payments", "open", "2/2"]
        assert "gateway timeout" in lines[1]
        assert lines[2].split()[:3] == ["search", "closed", "1/2"]
        data = json.loads(runner.invoke(cli, [*redis_args(redis_url), "status", "--json"]).stdout)
        assert {d["service"]: d["state"] for d in data} == {"payments": "open", "search": "closed"}
        check = runner.invoke(cli, [*redis_args(redis_url), "status", "--check"])
        assert check.exit_code == 2
        assert "payments" in check.stderr

    def test_watch_once(self, redis_url: str) -> None:
        """watch --count 1 prints one table and exits."""
        seed(redis_url).record_failure("svc", "x")
        result = CliRunner().invoke(
            cli, [*redis_args(redis_url), "watch", "--count", "1", "--interval", "0.1"]
        )
        assert result.exit_code == 0
        assert "svc" in result.stdout


class TestControls:
    def test_open_close_reset_are_fleet_wide(self, redis_url: str) -> None:
        """open holds the circuit open for the app's processes; close/reset end it."""
        app = seed(redis_url)
        app.record_failure("pg", "x")
        runner = CliRunner()
        opened = runner.invoke(cli, [*redis_args(redis_url), "open", "pg", "--reason", "failover"])
        assert opened.exit_code == 0, opened.stderr
        assert opened.stdout.strip() == "pg: forced_open"
        assert app.state("pg").state is CircuitState.FORCED_OPEN
        assert app.last_failure("pg")["reason"] == "failover"  # type: ignore[index]
        assert runner.invoke(cli, [*redis_args(redis_url), "close", "pg"]).stdout.strip() == "pg: closed"
        assert app.state("pg").state is CircuitState.CLOSED
        app.record_failure("pg", "y")
        runner.invoke(cli, [*redis_args(redis_url), "reset", "pg"])
        assert app.state("pg").failures == 0
        app.close()

    def test_unknown_service_is_one_line_on_stderr(self, redis_url: str) -> None:
        """An unknown service is a one-line error on stderr with a non-zero exit."""
        seed(redis_url).record_failure("known", "x")
        result = CliRunner().invoke(cli, [*redis_args(redis_url), "open", "nope"])
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr.strip() == "Error: unknown service 'nope' (known: known)"

    def test_all_needs_confirmation(self, redis_url: str) -> None:
        """--all asks first (and aborts on no); --yes skips the question."""
        app = seed(redis_url)
        for name in ("a", "b"):
            app.record_failure(name, "x")
        runner = CliRunner()
        declined = runner.invoke(cli, [*redis_args(redis_url), "open", "--all"], input="n\n")
        assert declined.exit_code == 1
        assert app.state("a").state is CircuitState.CLOSED
        accepted = runner.invoke(cli, [*redis_args(redis_url), "open", "--all"], input="y\n")
        assert accepted.exit_code == 0
        assert app.state("b").state is CircuitState.FORCED_OPEN
        reset = runner.invoke(cli, [*redis_args(redis_url), "reset", "--all", "--yes"])
        assert reset.stdout.splitlines() == ["a: closed", "b: closed"]
        app.close()


class TestErrors:
    def test_unreachable_redis_hides_password(self) -> None:
        """Unreachable Redis: one line on stderr, exit 1, the password masked."""
        url = f"redis://admin:hunter2@127.0.0.1:{free_port()}/0"
        result = CliRunner().invoke(cli, [*redis_args(url), "status"])
        assert result.exit_code == 1
        assert "hunter2" not in result.stderr + result.stdout
        assert result.stderr.startswith("Error: cannot reach Redis at redis://admin:***@")
        assert len(result.stderr.strip().splitlines()) == 1

    def test_bad_url(self) -> None:
        """A malformed URL is a one-line error naming redis_url."""
        result = CliRunner().invoke(cli, [*redis_args("redis://:pw@host:port/0"), "status"])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: redis_url:")
        assert ":pw@" not in result.stderr

    def test_env_vars(self, redis_url: str) -> None:
        """TNM_CIRCUIT_* environment variables stand in for the options."""
        seed(redis_url, "from-env").record_failure("env-svc", "x")
        env = {
            "TNM_CIRCUIT_BACKEND": "redis",
            "TNM_CIRCUIT_REDIS_URL": redis_url,
            "TNM_CIRCUIT_NAMESPACE": "from-env",
        }
        result = CliRunner().invoke(cli, ["status", "--json"], env=env)
        assert [d["service"] for d in json.loads(result.stdout)] == ["env-svc"]


class TestDemo:
    def test_demo_walks_every_state(self) -> None:
        """demo drives closed -> open -> half-open -> open -> half-open -> closed and exits 0."""
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["demo"])
        assert result.exit_code == 0, result.stdout
        assert "done: closed -> open -> half_open -> open -> half_open -> closed" in result.stdout
        assert "rejected, not sent" in result.stdout
        assert time.monotonic() - started < 30


class TestHelpers:
    def test_breaker_options_and_pass_breaker(self) -> None:
        """A user's command gets one breaker built from the options and its policies."""
        seen: list[CircuitBreaker] = []

        @click.command()
        @breaker_options(default_policy=ServicePolicy(max_failures=7))
        @pass_breaker
        def work(breaker: CircuitBreaker) -> None:
            seen.append(breaker)
            click.echo(f"{breaker.backend.name} {breaker.policy_for('x').max_failures}")

        result = CliRunner().invoke(work, [])
        assert result.stdout.strip() == "local 7"
        assert not seen[0].initialized  # closed when the command ended

    def test_run_worker_waits_out_open_circuit_and_requeues(self) -> None:
        """Items refused while open are requeued, never dropped; the loop waits instead of spinning."""
        clock = ManualClock()
        breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=2, open_seconds=5))
        queue = [1, 2, 3, 4]
        done: list[int] = []
        failing = {"left": 2}
        waits: list[float] = []

        def process(item: int) -> None:
            if failing["left"]:
                failing["left"] -= 1
                raise ConnectionError("down")
            done.append(item)

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            clock.advance(seconds)

        result = run_worker(
            breaker, "svc", lambda: queue.pop(0) if queue else None, process, queue.append,
            stop_when_empty=True, handle_signals=False, sleep=sleep,
        )  # fmt: skip
        assert result.exit_code is WorkerExit.DONE
        assert sorted(done) == [1, 2, 3, 4]
        assert (result.processed, result.failed, result.requeued) == (4, 2, 2)
        assert waits == [5.0]  # one wait for the open time, no polling


def _entry_point() -> str:
    script = shutil.which("tnm-circuit", path=str(Path(sys.executable).parent))
    assert script is not None, "the tnm-circuit entry point is not installed"
    return script


class TestSubprocess:
    def test_installed_entry_point(self, redis_url: str) -> None:
        """The installed tnm-circuit script runs against the session's Redis."""
        seed(redis_url, "proc").record_failure("proc-svc", "x")
        out = subprocess.run(
            [_entry_point(), *redis_args(redis_url, "proc"), "status", "--json"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert [d["service"] for d in json.loads(out.stdout)] == ["proc-svc"]

    def test_worker_finishes_every_item(self) -> None:
        """The example worker processes every item, failures included, and exits 0."""
        out = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "cli_worker.py"), "--items", "8", "--fail-first", "4"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert sorted(
            int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("processed ")
        ) == list(range(1, 9))
        assert out.stdout.splitlines()[-1] == "exit=DONE processed=8 failed=4 requeued=4 left=0"

    @pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
    def test_worker_stops_after_current_item_on_signal(self, sig: signal.Signals, code: int) -> None:
        """SIGTERM/SIGINT stop the worker after the current item; nothing is dropped."""
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "cli_worker.py"), "--items", "50", "--fail-first", "0",
             "--work-seconds", "0.05"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("processed ")
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == code
        lines = (first + rest).splitlines()
        processed = [line for line in lines if line.startswith("processed ")]
        summary = dict(part.split("=") for part in lines[-1].split())
        assert int(summary["processed"]) == len(processed)
        assert int(summary["processed"]) + int(summary["left"]) == 50
        assert int(summary["left"]) > 0
