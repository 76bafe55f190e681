"""Connections killed and the server paused while asyncio processes fail a service: each
failure's script run reaches Redis at most once (a run is sent again only if nothing of it went
out), and every caller gets its own exception.

Each failure carries a token of its own as its reason (``async_failure_worker.py``); ``MONITOR``
shows every run the server received, so a run sent twice shows as a token seen twice.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import threading
import time

import pytest

from ..redis_server import RedisServer
from .helpers import traffic

PROCESSES = 3
TRAFFIC_SECONDS = 3.0
NAMESPACE = "async-faults"
TOKEN = re.compile(rb"u\d+x\d+")
END = b"end-of-traffic"


class Monitor:
    """Every command the server receives, as ``MONITOR`` prints it, read by a thread of its own
    on a plain socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"MONITOR\r\n")
        self.chunks: list[bytes] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        tail = b""
        while True:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return
            self.chunks.append(chunk)
            tail = tail[-64:] + chunk
            if END in tail:
                self.done.set()
                return

    def lines(self, timeout: float = 30) -> list[bytes]:
        """The lines received up to the ``ECHO`` of ``END`` (sent after the traffic)."""
        assert self.done.wait(timeout), "MONITOR did not show the end of the traffic in time"
        self.sock.close()
        return b"".join(self.chunks).split(b"\r\n")[1:]  # (after MONITOR's +OK)


def _script_runs(lines: list[bytes]) -> list[bytes]:
    """The script runs clients sent (``MONITOR`` also shows the commands a script runs, as
    ``lua``'s)."""
    return [
        line for line in lines if (b'] "EVALSHA" ' in line or b'] "EVAL" ' in line) and b" lua]" not in line
    ]


@pytest.mark.slow
def test_killed_connections_and_a_pause_never_send_an_async_run_twice() -> None:
    server = RedisServer()
    server.start()
    try:
        admin = server.client()
        admin_id = admin.client_id()
        monitor = Monitor(server.port)
        kills = 0
        with traffic(
            server.url, NAMESPACE, TRAFFIC_SECONDS, PROCESSES, worker="async_failure_worker"
        ) as running:
            deadline = time.monotonic() + TRAFFIC_SECONDS - 0.5
            paused = False
            while time.monotonic() < deadline:
                for entry in admin.client_list(_type="normal"):
                    if int(entry["id"]) != admin_id and entry["cmd"] != "monitor":
                        kills += admin.client_kill_filter(_id=entry["id"])
                if not paused and time.monotonic() > deadline - 1.5:
                    assert server.process is not None
                    os.kill(server.process.pid, signal.SIGSTOP)  # every reply in flight is lost
                    time.sleep(0.5)
                    os.kill(server.process.pid, signal.SIGCONT)
                    paused = True
                time.sleep(0.3)
            results = running.results()
        admin.echo(END)
        runs = _script_runs(monitor.lines())
    finally:
        server.cleanup()
    for result in results:
        assert result["foreign"] == [], result
    own = sum(result["own"] for result in results)
    degraded = sum(result["degraded"] for result in results)
    seen = collections.Counter(token for run in runs for token in TOKEN.findall(run))
    twice = [token for token, count in seen.items() if count > 1]
    print(f"{own} failures, {len(seen)} runs seen, {kills} connections killed, {degraded} times degraded")
    assert twice == [], f"runs sent twice: {twice[:5]}"
    # (the faults met runs in flight, and the runs between them reached Redis)
    assert degraded >= PROCESSES
    assert 20 <= len(seen) <= own
