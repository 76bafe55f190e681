"""A real HTTP upstream for the HTTP client adapter tests: uvicorn on a free loopback port, in a thread.

Paths: ``/ok``; ``/slow`` (200 after 0.3 s); ``/status/<code>`` (503 and 429 carry
``Retry-After: 7``); ``/stall``, which never answers and returns once the client hangs up;
``/stream``, which sends its headers and a first chunk, then waits for ``gate`` before the
last one; ``/broken``, which sends its headers and a first chunk, then drops the connection.
Every request is counted by path as it arrives, so a test can prove that a refused
request never reached the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import Counter
from typing import Any

import uvicorn

STREAM_BODY = (b"first;", b"second")
WAIT = 30.0  # the most any handler waits for a client or a gate


class BrokenBody(Exception):
    """Raised by ``/broken`` mid-body: the server drops the connection."""


class Upstream:
    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = f"127.0.0.1:{self.port}"
        self.gate = threading.Event()
        self._hits: Counter[str] = Counter()
        self._changed = threading.Condition()
        config = uvicorn.Config(
            self.app,
            interface="asgi3",
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="upstream", daemon=True
        )

    # -- control, from the tests' thread ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        self.gate.set()
        self._server.should_exit = True
        self._thread.join(timeout=20)
        self._sock.close()

    def reset(self) -> None:
        self.gate = threading.Event()
        with self._changed:
            self._hits.clear()

    def hits(self, path: str | None = None) -> int:
        """Requests that reached the server (on ``path``, or on any path)."""
        with self._changed:
            return self._hits[path] if path is not None else sum(self._hits.values())

    def wait_for_hits(self, path: str, count: int, timeout: float = 10.0) -> bool:
        """Wait (at most ``timeout``) until ``count`` requests on ``path`` have arrived."""
        with self._changed:
            return self._changed.wait_for(lambda: self._hits[path] >= count, timeout)

    # -- the ASGI app, on the server's thread ----------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        with self._changed:
            self._hits[path] += 1
            self._changed.notify_all()
        if path == "/stall":
            await self._until_disconnect(receive)
            return
        if path == "/slow":  # answers after 0.3 s
            await asyncio.sleep(0.3)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"slow"})
            return
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": STREAM_BODY[0], "more_body": True})
            await asyncio.to_thread(self.gate.wait, WAIT)
            await send({"type": "http.response.body", "body": STREAM_BODY[1]})
            return
        if path == "/broken":  # the body breaks off after its first chunk
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": STREAM_BODY[0], "more_body": True})
            raise BrokenBody
        status = int(path.removeprefix("/status/")) if path.startswith("/status/") else 200
        headers = [(b"retry-after", b"7")] if status in (429, 503) else []
        body = b"ok" if status == 200 else f"status {status}".encode()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _until_disconnect(receive: Any) -> None:
        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(disconnected(), WAIT)


def refused_port() -> socket.socket:
    """A loopback socket bound but not listening: connecting to its port is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock
