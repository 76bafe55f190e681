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
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy
from tnm.circuit.testing import ManualClock, trip
from tnm.circuit_cli import WorkerExit, breaker_options, cli, pass_breaker, run_worker
from tnm.circuit_cli import _watch as watch_module

from ..interrupts import ctrl_c_works
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
        assert lines[0].split() == [
            "SERVICE", "STATE", "OPENED", "BY", "FAILURES", "PROCESSES",
            "RETRY", "IN", "LAST", "FAILURE", "AGE",
        ]  # fmt: skip
        assert lines[1].split()[:5] == ["payments", "open", "failures", "2/2", "1"]  # one failing process
        assert "gateway timeout" in lines[1]
        assert lines[2].split()[:4] == ["search", "closed", "-", "1/2"]
        data = json.loads(runner.invoke(cli, [*redis_args(redis_url), "status", "--json"]).stdout)
        assert {d["service"]: d["state"] for d in data} == {"payments": "open", "search": "closed"}
        assert {d["service"]: d["opened_by"] for d in data} == {"payments": "failures", "search": None}
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


def _run_on_terminal(args: list[str], env: dict[str, str], timeout: float = 30) -> bytes:
    """Run the installed tnm-circuit on a pseudo-terminal (a real TTY) and return all it wrote."""
    import pty
    import select

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [_entry_point(), *args], stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the process closed the terminal: EIO on Linux
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(leader)
    return output


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}, **extra)
    return env


class TestWatch:
    def test_terminal_redraws_in_place_with_colour(self, redis_url: str) -> None:
        """On a terminal, watch redraws its table in place (cursor moves up) and colours states."""
        trip(seed(redis_url, "tty"), "payments")
        out = _run_on_terminal(
            [*redis_args(redis_url, "tty"), "watch", "--count", "3", "--interval", "0.1"], _clean_env()
        )
        assert out.count(b"payments") >= 3
        assert b"\x1b[1A" in out or b"\x1b[A" in out  # back up over the previous frame
        assert b"\x1b[2J" not in out  # no clearing the whole screen
        assert b"\x1b[1;31m" in out or b"\x1b[31;1m" in out  # "open" in bold red

    def test_no_color_keeps_the_redraw_without_colour(self, redis_url: str) -> None:
        """NO_COLOR on a terminal: still redrawn in place, with no colour codes."""
        trip(seed(redis_url, "nocolor"), "payments")
        out = _run_on_terminal(
            [*redis_args(redis_url, "nocolor"), "watch", "--count", "2", "--interval", "0.1"],
            _clean_env(NO_COLOR="1"),
        )
        assert out.count(b"payments") >= 2
        assert b"\x1b[1A" in out or b"\x1b[A" in out
        assert b"31m" not in out
        assert b"32m" not in out

    def test_piped_output_is_plain_text(self, redis_url: str) -> None:
        """Piped, each refresh is plain text below the last: no escape codes at all."""
        trip(seed(redis_url, "piped"), "payments")
        out = subprocess.run(
            [_entry_point(), *redis_args(redis_url, "piped"), "watch", "--count", "2", "--interval", "0.1"],
            capture_output=True, timeout=30, env=_clean_env(), check=True,
        )  # fmt: skip
        assert b"\x1b" not in out.stdout
        assert out.stdout.count(b"payments  open") == 2

    def test_ctrl_c_exits_0_quietly(self) -> None:
        """Ctrl-C (SIGINT) stops watch with exit 0 and nothing on stderr, not "Aborted!" and 1."""
        with subprocess.Popen(
            [_entry_point(), "watch", "--interval", "0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_clean_env(), preexec_fn=ctrl_c_works,
        ) as proc:  # fmt: skip
            try:
                assert proc.stdout is not None
                first = proc.stdout.readline()  # the first frame is out: the loop is running
                assert b"every 0.1s" in first
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 0
        assert err == b""

    def test_store_outage_is_shown(
        self, redis_url: str, redis_server: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When Redis goes away between two refreshes, the next frame says the store is unreachable."""
        seed(redis_url, "outage").record_failure("svc", "x")

        def stop_redis_instead_of_waiting(seconds: float) -> None:
            redis_server.stop()

        monkeypatch.setattr(watch_module, "pause", stop_redis_instead_of_waiting)
        result = CliRunner().invoke(
            cli,
            [*redis_args(redis_url, "outage"), "watch", "--count", "2", "--interval", "0.1"],
        )
        assert result.exit_code == 0, result.output
        first, second = result.stdout.split("\n\n")
        assert "unreachable" not in first
        assert "warning: circuit store at redis://127.0.0.1" in second
        assert "unreachable" in second


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

    def test_disable_is_fleet_wide(self, redis_url: str) -> None:
        """disable lets the app's calls through with the reason shown; close ends it."""
        app = seed(redis_url)
        app.record_failure("pg", "x")
        runner = CliRunner()
        args = [*redis_args(redis_url), "disable", "pg", "--reason", "flaky, keep calling"]
        disabled = runner.invoke(cli, args)
        assert disabled.exit_code == 0, disabled.stderr
        assert disabled.stdout.strip() == "pg: disabled"
        assert app.state("pg").state is CircuitState.DISABLED
        assert app.last_failure("pg")["reason"] == "flaky, keep calling"  # type: ignore[index]
        check = runner.invoke(cli, [*redis_args(redis_url), "status", "--check"])
        assert check.exit_code == 2
        assert "pg (disabled)" in check.stderr
        assert runner.invoke(cli, [*redis_args(redis_url), "close", "pg"]).stdout.strip() == "pg: closed"
        assert app.state("pg").state is CircuitState.CLOSED
        app.close()

    def test_unknown_service_is_one_line_on_stderr(self, redis_url: str) -> None:
        """Closing or resetting an unknown service is a one-line error on stderr with a non-zero exit."""
        seed(redis_url).record_failure("known", "x")
        for verb in ("close", "reset"):
            result = CliRunner().invoke(cli, [*redis_args(redis_url), verb, "nope"])
            assert result.exit_code == 1
            assert result.stdout == ""
            assert result.stderr.strip() == "Error: unknown service 'nope' (known: known)"

    def test_open_a_service_never_used_redis(self, redis_url: str) -> None:
        """`open payments` on a fresh Redis namespace holds it open for the app's processes."""
        result = CliRunner().invoke(cli, [*redis_args(redis_url, "fresh"), "open", "payments"])
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == "payments: forced_open"
        app = seed(redis_url, "fresh")
        assert app.state("payments").state is CircuitState.FORCED_OPEN
        assert app.last_failure("payments")["reason"] == "held open by an operator"  # type: ignore[index]

    def test_open_rejects_an_invalid_name(self, redis_url: str) -> None:
        """A blank or control-character name is still refused, naming the problem, exit 1."""
        result = CliRunner().invoke(cli, [*redis_args(redis_url), "open", "pay\nments"])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: service: must not contain control characters")

    def test_reason_only_on_open(self) -> None:
        """close and reset take no --reason (it did nothing there); open keeps it."""
        runner = CliRunner()
        for verb in ("close", "reset"):
            assert "--reason" not in runner.invoke(cli, [verb, "--help"]).stdout
            misuse = runner.invoke(cli, [verb, "svc", "--reason", "x"])
            assert misuse.exit_code == 2
            assert "No such option" in misuse.stderr  # Click's wording varies between releases
            assert "--reason" in misuse.stderr
        assert "--reason" in runner.invoke(cli, ["open", "--help"]).stdout

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
        """A malformed URL is a one-line error naming --redis-url and its variable, not redis_url=."""
        result = CliRunner().invoke(cli, [*redis_args("redis://:pw@host:port/0"), "status"])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: --redis-url (or TNM_CIRCUIT_REDIS_URL): ")
        assert "redis_url" not in result.stderr
        assert ":pw@" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    def test_bad_namespace_names_the_option(self) -> None:
        """A namespace the backend refuses is reported against --namespace."""
        url = f"redis://127.0.0.1:{free_port()}/0"
        result = CliRunner().invoke(cli, [*redis_args(url, "a{b}"), "status"])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: --namespace (or TNM_CIRCUIT_NAMESPACE): ")

    def test_check_exits_1_when_the_backend_is_unreachable(self) -> None:
        """status --check exits 1 (not 0, not 2) when Redis cannot be reached."""
        url = f"redis://127.0.0.1:{free_port()}/0"
        result = CliRunner().invoke(cli, [*redis_args(url), "status", "--check"])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: cannot reach Redis")


class TestBackendChoice:
    def test_url_alone_selects_redis(self, redis_url: str) -> None:
        """--redis-url without --backend uses Redis, so status sees the fleet's circuits."""
        seed(redis_url, "by-url").record_failure("shared-svc", "x")
        result = CliRunner().invoke(
            cli, ["--redis-url", redis_url, "--namespace", "by-url", "status", "--json"]
        )
        assert result.exit_code == 0, result.stderr
        assert [d["service"] for d in json.loads(result.stdout)] == ["shared-svc"]

    def test_env_url_alone_selects_redis(self, redis_url: str) -> None:
        """TNM_CIRCUIT_REDIS_URL without TNM_CIRCUIT_BACKEND uses Redis too: --check cannot lie."""
        trip(seed(redis_url, "env-url"), "down-svc")
        env = {
            "TNM_CIRCUIT_REDIS_URL": redis_url,
            "TNM_CIRCUIT_NAMESPACE": "env-url",
            "TNM_CIRCUIT_BACKEND": None,
        }
        result = CliRunner().invoke(cli, ["status", "--check"], env=env)
        assert result.exit_code == 2
        assert "down-svc (open)" in result.stderr

    @pytest.mark.parametrize(
        ("args", "env"),
        [
            (["--backend", "local", "--redis-url", "redis://127.0.0.1:6379/0"], {}),
            ([], {"TNM_CIRCUIT_BACKEND": "local", "TNM_CIRCUIT_REDIS_URL": "redis://127.0.0.1:6379/0"}),
        ],
    )
    def test_url_with_explicit_local_backend_is_an_error(self, args: list[str], env: dict[str, str]) -> None:
        """A URL with an explicitly local backend is a one-line error naming both options, exit 1."""
        result = CliRunner().invoke(cli, [*args, "status", "--check"], env=env)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert "--redis-url (or TNM_CIRCUIT_REDIS_URL)" in result.stderr
        assert "--backend (or TNM_CIRCUIT_BACKEND) is 'local'" in result.stderr

    def test_redis_backend_without_url_names_the_option(self) -> None:
        """--backend redis without a URL asks for --redis-url, not for redis_url=."""
        result = CliRunner().invoke(
            cli, ["--backend", "redis", "status"], env={"TNM_CIRCUIT_REDIS_URL": None}
        )
        assert result.exit_code == 1
        assert result.stderr.strip() == "Error: --backend redis needs --redis-url (or TNM_CIRCUIT_REDIS_URL)"

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


class TestHelpAndVersion:
    def test_version(self) -> None:
        """--version names the command and both packages' installed versions."""
        result = CliRunner().invoke(cli, ["--version"])
        assert result.exit_code == 0
        expected = (
            f"tnm-circuit {version('tnm-circuit-cli')} (tnm-circuit-core {version('tnm-circuit-core')})"
        )
        assert result.stdout.strip() == expected

    def test_status_help_documents_check_and_exit_codes(self) -> None:
        """status --help says --check exits 2 for half-open and forced open too, and 1 when unreachable."""
        text = " ".join(CliRunner().invoke(cli, ["status", "--help"]).stdout.split())
        assert "Exit 2 if any circuit is not closed (open, half-open, forced open or disabled)" in text
        assert "1 the backend could not be reached or is misconfigured" in text
        assert "2 status --check only" in text


class TestDemo:
    def test_demo_walks_every_state(self) -> None:
        """demo drives closed -> open -> half-open -> open -> half-open -> closed and exits 0."""
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["demo"])
        assert result.exit_code == 0, result.stdout
        assert "done: closed -> open -> half_open -> open -> half_open -> closed" in result.stdout
        assert "rejected, not sent" in result.stdout
        assert time.monotonic() - started < 30

    def test_demo_prints_in_the_order_things_happened(self) -> None:
        """The call that opened the circuit is printed before the opening; a trial's admission before it."""
        lines = [line.strip() for line in CliRunner().invoke(cli, ["demo"]).stdout.splitlines()]
        assert (
            lines.index(">> circuit closed -> open")
            == lines.index("call  3: failed (payments-api: connection refused)") + 1
        )
        assert lines.index(">> circuit open -> half_open") + 1 == lines.index(
            "call  6: failed (payments-api: connection refused)"
        )
        assert (
            lines[lines.index("call  6: failed (payments-api: connection refused)") + 1]
            == ">> circuit half_open -> open"
        )
        assert lines[lines.index("call  8: order 8 charged") + 1] == ">> circuit half_open -> closed"

    def test_quickstart_prints_in_the_order_things_happened(self) -> None:
        """examples/quickstart.py shows the opening after the call that caused it, and nothing on stderr."""
        out = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""
        lines = [line.strip() for line in out.stdout.splitlines()]
        opened = lines.index("** inventory-api: closed -> open")
        assert lines[opened - 1] == "call 3: failed (inventory-api: connection refused)"
        trial = lines.index("trial call: stock = 12")
        assert lines[trial - 1] == "** inventory-api: open -> half_open"
        assert lines[trial + 1] == "** inventory-api: half_open -> closed"


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

    def test_run_worker_looks_again_after_the_open_time_while_a_trial_runs(self) -> None:
        """Half-open, its one trial taken by another worker: the loop waits the open time (2 s),
        not the trial permit's deadline (30 s), then finds the circuit closed by the trial."""
        result, done, waits = _work_while_a_trial_runs(queue=[1, 2])
        assert result.exit_code is WorkerExit.DONE
        assert done == [1, 2]
        assert waits == [2.0]

    def test_run_worker_refused_by_execute_while_a_trial_runs_looks_again_after_the_open_time(
        self,
    ) -> None:
        """The circuit's trial is taken between the loop's look and its call: the refused item is
        requeued and the loop waits the open time (2 s), not the trial permit's deadline (30 s)."""
        result, done, waits = _work_while_a_trial_runs(queue=[1], looked_before_the_trial=True)
        assert (result.processed, result.requeued) == (1, 1)
        assert done == [1]
        assert waits == [2.0]


def _work_while_a_trial_runs(
    queue: list[int], looked_before_the_trial: bool = False
) -> tuple[Any, list[int], list[float]]:
    """``run_worker`` over ``queue`` while another worker's trial runs in a half-open circuit
    (open time 2 s); the trial succeeds during the loop's first wait. Returns the result, the
    items processed and the waits."""
    clock = ManualClock()
    breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=1, open_seconds=2))
    breaker.record_failure("svc", "down")
    clock.advance(2)
    if looked_before_the_trial:  # the loop found the circuit available just before the trial began
        breaker.is_available = lambda service: True  # type: ignore[method-assign]
    trial = breaker.guard("svc")
    trial.__enter__()  # another worker's trial, in flight
    done: list[int] = []
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)
        trial.__exit__(None, None, None)  # that trial succeeds meanwhile

    result = run_worker(
        breaker, "svc", lambda: queue.pop(0) if queue else None, done.append, queue.append,
        stop_when_empty=True, handle_signals=False, sleep=sleep,
    )  # fmt: skip
    return result, done, waits


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
        assert out.stderr == ""  # logging unconfigured: the library prints nothing of its own
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
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=ctrl_c_works,
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
