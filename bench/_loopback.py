"""The loopback upstream the client benchmarks call: started in a child process on a free port.

A bench script runs itself again with ``--serve PORT`` in the child (see ``command_line``); the
parent waits until the port accepts connections, measures, then stops the child.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from tnm.circuit import CircuitBreaker, ServicePolicy

NEVER = 10**9  # a threshold no run reaches


def idle_breaker() -> CircuitBreaker:
    """A local breaker whose circuits never open in a run: the healthy path only."""
    return CircuitBreaker(default_policy=ServicePolicy(max_failures=NEVER, window_seconds=3600))


def command_line() -> argparse.Namespace:
    """``--quick`` for a short run; ``--serve PORT`` (hidden) runs the upstream in the child."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The HTTP upstream: answers every request with a small 200."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def serve_http(port: int) -> None:
    """Run ``ok_app`` on uvicorn on ``127.0.0.1:port`` until stopped (in the child)."""
    import uvicorn

    uvicorn.run(ok_app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


@contextlib.contextmanager
def upstream(script: str, name: str = "upstream") -> Iterator[int]:
    """Start ``script --serve PORT`` on a free loopback port, yield the port once it accepts
    connections (20 s at most), and stop the child on the way out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen([sys.executable, script, "--serve", str(port)])
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() >= deadline:
                process.kill()
                raise RuntimeError(f"the {name} did not start") from None
            time.sleep(0.05)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
