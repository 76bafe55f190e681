"""One member of the fleet: a FastAPI app, served by uvicorn, that calls the upstream.

``GET /call`` is what the app's callers use: it calls the upstream through the contender's
protected httpx call and answers 200 if the upstream did, 503 otherwise (upstream failure or
circuit open). The drill reads ``GET /_log`` (the moments failures came back from the upstream)
and waits for ``GET /health`` at start-up.

For the tnm contenders the app is wired the way a user would: ``install(app, breaker)`` from
tnm-circuit-fastapi (its lifespan initializes and closes the breaker; its handler turns
``CircuitOpenError`` into 503). The peers get the same 503 from plain exception handlers.

Run as ``python -m drill.worker --port P --contender NAME ...`` (with ``bench/`` on the path).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tnm.circuit_fastapi import install, open_error_response
from tnm.circuit_httpx import CircuitOpenRequestError

from .config import Policy
from .contenders import Contender, make_contender


def build_app(contender: Contender) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await contender.client.aclose()

    app = FastAPI(lifespan=lifespan)
    if contender.breaker is not None:
        install(app, contender.breaker)

    async def unavailable(request: Request, exc: Exception) -> Response:
        return Response(b"unavailable", status_code=503)

    for refusal in contender.refusals:
        app.add_exception_handler(refusal, unavailable)
    if contender.breaker is not None:
        # The transport's rejection is also an httpx.TransportError, which comes first in its
        # class order: give it tnm-circuit-fastapi's 503 (with Retry-After) explicitly.
        async def open_circuit(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, CircuitOpenRequestError)
            return open_error_response(exc)

        app.add_exception_handler(CircuitOpenRequestError, open_circuit)

    @app.get("/call")
    async def call() -> Response:
        response = await contender.fetch()
        if response.status_code >= 500:  # the tnm transport hands a counted 503 back as it is
            return Response(b"unavailable", status_code=503)
        return Response(b"ok")

    @app.get("/_log")
    async def log() -> dict[str, Any]:
        return {"failures": contender.failures}

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"contender": contender.name})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--contender", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--threshold", type=int, required=True)
    parser.add_argument("--open-seconds", type=float, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--namespace", required=True)
    args = parser.parse_args()
    contender = make_contender(
        args.contender,
        args.upstream,
        Policy(args.threshold, args.open_seconds),
        args.timeout,
        args.redis_url,
        args.namespace,
    )
    import uvicorn

    uvicorn.run(
        build_app(contender),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
