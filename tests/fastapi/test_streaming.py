"""A streaming response built from a protected async generator is counted, through a real uvicorn server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from tnm.circuit import CircuitBreaker, CircuitState, ServicePolicy

from .test_fastapi_adapter import live_server

__all__ = ["live_server"]  # the fixture, shared with the adapter's tests


class TestStreamingResponse:
    def test_stream_outcomes_are_counted(self, live_server: Callable[[FastAPI], str]) -> None:
        """A stream that completes is a success; one cut by an error counts and opens the circuit."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=2))
        seen: list[str] = []

        @breaker.protect("llm")
        async def tokens(fail: bool) -> AsyncIterator[bytes]:
            seen.append("started")
            yield b"a"
            if fail:
                raise ConnectionError("upstream cut the stream")
            yield b"b"

        app = FastAPI()

        @app.get("/stream")
        async def stream(fail: bool = False) -> StreamingResponse:
            return StreamingResponse(tokens(fail), media_type="text/plain")

        base = live_server(app)
        with httpx.Client(base_url=base, timeout=5) as client:
            assert client.get("/stream").text == "ab"
            with pytest.raises(httpx.HTTPError):
                client.get("/stream", params={"fail": True}).read()
            assert breaker.state("llm").failures == 1
            assert client.get("/stream").text == "ab"  # a completed stream resets the count
            assert breaker.state("llm").failures == 0
            for _ in range(2):
                with pytest.raises(httpx.HTTPError):
                    client.get("/stream", params={"fail": True}).read()
        snap = breaker.state("llm")
        assert (snap.state, snap.opened_by, snap.failures) == (CircuitState.OPEN, "failures", 2)
        assert seen == ["started"] * 5
