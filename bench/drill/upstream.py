"""The dependency that goes down: a tiny ASGI app on uvicorn, switched between modes by the drill.

``GET /`` is the dependency's one endpoint. Its answer depends on the mode:

- ``ok``: 200 at once;
- ``error``: 503 at once;
- ``stall``: the request is held ``hold`` seconds, then answered 503; a request still held
  when the upstream recovers is answered 200 at that moment, as a server that comes back
  answers what it was holding.

No ``Retry-After`` is ever sent, so every contender keeps its circuit open for the same time.
The drill drives it with ``POST /_mode?mode=...&hold=...`` (it records the moment of each
switch on its own clock), reads what it saw with ``GET /_log`` and clears it with ``POST /_reset``.
Every request's arrival is recorded on ``time.monotonic()``, the clock the workers and the load
generator use too (one machine, one monotonic clock).

Run as ``python -m drill.upstream PORT`` (with ``bench/`` on the path).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import parse_qs


class Upstream:
    """The mode and the record of one run."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hold = 1.0
        self.recovered = asyncio.Event()
        self.arrivals: list[float] = []
        self.switches: list[tuple[str, float]] = []

    def switch(self, mode: str, hold: float) -> None:
        now = time.monotonic()
        if mode == "stall":
            self.recovered = asyncio.Event()
            self.hold = hold
        elif self.mode == "stall":
            self.recovered.set()  # what was held is answered now
        self.mode = mode
        self.switches.append((mode, now))

    async def answer(self) -> int:
        self.arrivals.append(time.monotonic())
        if self.mode == "error":
            return 503
        if self.mode == "stall":
            try:
                await asyncio.wait_for(self.recovered.wait(), self.hold)
            except asyncio.TimeoutError:
                return 503
        return 200


UPSTREAM = Upstream()


async def send_body(send: Any, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/":
        status = await UPSTREAM.answer()
        await send_body(send, status, b"ok" if status == 200 else b"unavailable")
    elif path == "/_mode":
        query = parse_qs(scope["query_string"].decode())
        UPSTREAM.switch(query["mode"][0], float(query.get("hold", ["1"])[0]))
        await send_body(send, 200, b"switched")
    elif path == "/_log":
        record = {"arrivals": UPSTREAM.arrivals, "switches": UPSTREAM.switches}
        await send_body(send, 200, json.dumps(record).encode(), b"application/json")
    elif path == "/_reset":
        UPSTREAM.switch("ok", UPSTREAM.hold)
        UPSTREAM.arrivals = []
        UPSTREAM.switches = []
        await send_body(send, 200, b"reset")
    elif path == "/health":
        await send_body(send, 200, b"up")
    else:
        await send_body(send, 404, b"not found")


def main() -> None:
    import uvicorn

    port = int(sys.argv[1])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
