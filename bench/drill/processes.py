"""Starting, watching and stopping every process the drill starts.

Each child runs in its own process group (``start_new_session``), so a Ctrl-C in the terminal
reaches only the drill, which then stops every child itself (``Children.close``, called from
the drill's ``finally``): first SIGTERM to the group, then SIGKILL after a bounded wait. A child's
output goes to a log file, whose tail is shown if it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent.parent
START_SECONDS = 60.0
"""The longest a child may take to answer its health check (imports on a busy machine)."""
STOP_SECONDS = 10.0


class DrillError(Exception):
    """A problem the drill reports in one line and exits on (after stopping its processes)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, what: str) -> None:
    """Raise ``DrillError`` if something already listens on ``port`` (loopback)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise DrillError(f"port {port} ({what}) is busy: {exc.strerror}") from None


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Children:
    """The drill's child processes; ``close`` ends every one still running."""

    def __init__(self) -> None:
        self.logs = Path(tempfile.mkdtemp(prefix="tnm-drill-"))
        self.running: list[Child] = []

    def start_module(self, name: str, module: str, args: list[str], port: int) -> Child:
        """Start ``python -m drill.<module> args`` on ``port`` (checked free first)."""
        check_port_free(port, name)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH_DIR), env.get("PYTHONPATH")) if p)
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", f"drill.{module}", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        child = Child(name, process, log, port)
        self.running.append(child)
        return child

    def wait_ready(self, children: list[Child]) -> None:
        """Wait (bounded) until each child answers ``GET /health``; raise if one exits first."""
        deadline = time.monotonic() + START_SECONDS
        pending = list(children)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                child = pending[0]
                code = child.process.poll()
                if code is not None:
                    raise DrillError(
                        f"{child.name} (port {child.port}) exited at start-up with code {code}:\n"
                        + child.tail()
                    )
                try:
                    if client.get(f"{child.url}/health").status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise DrillError(f"{child.name} (port {child.port}) did not start in {START_SECONDS:g} s")
                time.sleep(0.05)

    def stop(self, children: list[Child]) -> None:
        """SIGTERM each child's process group, then SIGKILL what is left after a bounded wait."""
        for child in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait(timeout=STOP_SECONDS)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)  # anything the child itself started
            if child in self.running:
                self.running.remove(child)

    def close(self) -> None:
        """Stop every child still running, and remove their logs."""
        self.stop(list(self.running))
        shutil.rmtree(self.logs, ignore_errors=True)
