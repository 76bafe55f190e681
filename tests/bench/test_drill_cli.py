"""bench/drill.py's command line: bad input is refused clearly, nothing is left running, and a
very short run writes the JSON report in the documented shape."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ..interrupts import ctrl_c_works

DRILL = Path(__file__).resolve().parents[2] / "bench" / "drill.py"
MARK = "TNM_DRILL_TEST_MARK"
CONTENDER_KEYS = {
    "upstream_requests_during_outage",
    "minimum_possible",
    "p50_ms",
    "p99_ms",
    "p99_after_trip_ms",
    "errors",
    "recovery_seconds",
}

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes in /proc")


def marked_processes(mark: str) -> list[int]:
    """Processes whose environment carries ``mark``: every process the drill starts inherits it, but
    redis-server rewrites that memory for its title, so tests also follow the drill's descendants."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or ``None`` if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def descendants(root: int) -> dict[int, int | None]:
    """Every living descendant of ``root``, with its start time (to tell a reused pid apart)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: dict[int, int | None] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = start_time(pid)
                frontier.append(pid)
    return found


def drill(*args: str, mark: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, MARK: mark}
    return subprocess.run(
        [sys.executable, str(DRILL), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture
def mark() -> str:
    value = uuid.uuid4().hex
    yield value
    leftover = marked_processes(value)
    for pid in leftover:  # never leave them running, even when the test fails
        os.kill(pid, signal.SIGKILL)


class TestBadInput:
    @pytest.mark.parametrize(
        ("args", "field", "says"),
        [
            (["--scenario", "flood"], "--scenario", "invalid choice"),
            (["--rate", "0"], "--rate", "must be positive"),
            (["--rate", "-50"], "--rate", "must be positive"),
            (["--outage-seconds", "0"], "--outage-seconds", "must be positive"),
            (["--duration", "-1"], "--outage-seconds", "must be positive"),
            (["--workers", "0"], "--workers", "must be positive"),
            (["--contenders", "tnm-redis,hystrix"], "--contenders", "hystrix"),
        ],
    )
    def test_refused_with_the_option_named(self, mark: str, args: list[str], field: str, says: str) -> None:
        """An unknown scenario or contender, or a non-positive number, exits 2 naming the option."""
        result = drill(*args, mark=mark)
        assert result.returncode == 2
        assert field in result.stderr
        assert says in result.stderr
        assert result.stdout == ""
        assert marked_processes(mark) == []

    def test_busy_port_is_named_and_nothing_is_left_running(self, mark: str) -> None:
        """A port already taken exits 2 with the port in the message, and leaves no process behind."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            # Contenders that need no bench group: the suite runs without it.
            result = drill("--quick", "--contenders", "none,tnm-local", "--port", str(port), mark=mark)
        assert result.returncode == 2
        assert f"port {port}" in result.stderr
        assert "busy" in result.stderr
        assert "Traceback" not in result.stderr
        assert marked_processes(mark) == []


@pytest.mark.slow
class TestRun:
    @pytest.mark.timeout(120)
    def test_interrupt_stops_every_process(self, mark: str) -> None:
        """Ctrl-C (SIGINT) in the middle of a run stops the fleet, the upstream and redis-server."""
        env = {**os.environ, MARK: mark}
        args = [
            "--quick",
            "--scenario",
            "error",
            "--contenders",
            "tnm-redis",
            "--workers",
            "2",
            "--rate",
            "20",
        ]
        with subprocess.Popen(
            [sys.executable, str(DRILL), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=ctrl_c_works,
        ) as process:
            try:
                assert process.stdout is not None
                deadline = time.monotonic() + 60
                for line in process.stdout:
                    if line.startswith("running"):
                        break
                    assert time.monotonic() < deadline, "the drill never started a run"
                started = descendants(process.pid)
                while len(started) < 4:  # redis-server, the upstream, two workers
                    assert time.monotonic() < deadline, f"the fleet never started: {started}"
                    time.sleep(0.1)
                    started = descendants(process.pid)
                process.send_signal(signal.SIGINT)
                _, stderr = process.communicate(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
        assert process.returncode == 130
        assert "interrupted" in stderr
        assert [pid for pid, start in started.items() if start_time(pid) == start] == []
        assert marked_processes(mark) == []

    @pytest.mark.timeout(120)
    def test_short_run_writes_the_json_shape(self, mark: str, tmp_path: Path) -> None:
        """A very short run writes every contender's figures under the scenario, as documented."""
        contenders = ["none", "tnm-redis"]  # the rest need the bench group, and time
        report = tmp_path / "drill.json"
        args = [
            "--scenario", "error", "--contenders", ",".join(contenders), "--workers", "1", "--rate", "40",
            "--outage-seconds", "1.5", "--open-seconds", "0.3", "--warmup-seconds", "0.3",
            "--json", str(report),
        ]  # fmt: skip
        result = drill(*args, mark=mark, timeout=110)
        assert result.returncode == 0, result.stderr
        data = json.loads(report.read_text())
        assert data["workers"] == 1
        assert data["outage_seconds"] == 1.5
        assert list(data["scenarios"]) == ["error"]
        figures = data["scenarios"]["error"]["contenders"]
        assert sorted(figures) == sorted(contenders)
        for name, entry in figures.items():
            assert set(entry) == CONTENDER_KEYS, name
            assert entry["upstream_requests_during_outage"] >= entry["minimum_possible"] >= 1
            assert all(isinstance(count, int) for count in entry["errors"].values())
        assert (
            figures["none"]["upstream_requests_during_outage"]
            > figures["tnm-redis"]["upstream_requests_during_outage"]
        )
        assert marked_processes(mark) == []
