"""The load generator: a fixed request rate to the fleet, and what each caller saw.

Open loop: request ``i`` is due at ``start + i / rate`` whether earlier ones have been answered
or not (callers of a real service do not wait for each other), and goes to worker
``i mod N`` (round robin, as a load balancer would). The count is fixed (``rate * seconds``),
each request is bounded by ``CALLER_TIMEOUT`` and the whole run by its length plus that
timeout. Every request's send time (``time.monotonic()``), latency and outcome is kept.

The callers speak plain HTTP/1.1 over keep-alive connections with asyncio streams (a
connection per request in flight, reused when idle): a full HTTP client costs several times
more CPU per request, which on a small machine would be taken from the fleet being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .config import CALLER_TIMEOUT


@dataclass(frozen=True)
class Sample:
    """One caller's request: when it was sent, how long it took, and what came back."""

    sent: float
    seconds: float
    kind: str  # "ok" (200), "503", "timeout" or "other"


@dataclass(frozen=True)
class Event:
    """Something to do at ``at`` seconds from the load's start (switching the upstream)."""

    at: float
    action: Callable[[], Awaitable[None]]


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Target:
    """One server (a worker, or the upstream for the drill's switches): its idle keep-alive connections."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Connection] = []

    async def get(self, path: str = "/call", method: str = "GET") -> int:
        """Send a request and return the status (the connection is reused if it stays open)."""
        request = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: 0\r\n\r\n"
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request.encode())
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("the worker closed the connection")
            status = int(status_line.split()[1])
            length, keep = 0, True
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    keep = False
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    @classmethod
    def of(cls, url: str) -> Target:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(host, int(port))

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def one_request(target: Target, samples: list[Sample]) -> None:
    sent = time.monotonic()
    try:
        status = await asyncio.wait_for(target.get(), CALLER_TIMEOUT)
        kind = "ok" if status == 200 else "503" if status == 503 else "other"
    except asyncio.TimeoutError:
        kind = "timeout"
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
        kind = "other"
    samples.append(Sample(sent, time.monotonic() - sent, kind))


async def generate(
    worker_urls: Sequence[str], rate: float, seconds: float, events: Sequence[Event] = ()
) -> list[Sample]:
    """Send ``rate`` requests per second for ``seconds`` to the workers; run ``events`` on time."""
    samples: list[Sample] = []
    total = int(rate * seconds)
    targets = [Target.of(url) for url in worker_urls]
    start = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()
    event_tasks = [asyncio.create_task(_at(start + event.at, event.action)) for event in events]
    try:
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one_request(targets[i % len(targets)], samples))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.wait_for(
            asyncio.gather(*tasks, *event_tasks),
            timeout=max(0.0, start + seconds - time.monotonic()) + CALLER_TIMEOUT + 5,
        )
    finally:
        for task in (*tasks, *event_tasks):
            task.cancel()
        for target in targets:
            target.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, *event_tasks, return_exceptions=True)
    return samples


async def _at(when: float, action: Callable[[], Awaitable[None]]) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    await action()
