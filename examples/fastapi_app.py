"""A FastAPI app whose search endpoint is protected by a circuit breaker.

Run:   uv run uvicorn examples.fastapi_app:app
Try:   curl 'localhost:8000/search?q=x'
       curl -X POST 'localhost:8000/simulate/outage?down=true'    (Elasticsearch "goes down")
       curl 'localhost:8000/search?q=x'       (three failures open the circuit: then 503)
       curl localhost:8000/health/circuits

State is kept in this process unless TNM_CIRCUIT_REDIS_URL is set (then in Redis, shared
by every worker); TNM_CIRCUIT_NAMESPACE (default ``myapp:circuit``) prefixes the keys, as
in the Celery example and the ``tnm-circuit`` command.

What it shows:
- the lifespan is an async context manager (``breaker_lifespan``, installed by
  ``install``); startup fails if the breaker cannot start, instead of swallowing the error;
- the breaker reaches endpoints through a dependency (``BreakerDep``);
- ``CircuitOpenError`` becomes a 503 with ``Retry-After`` through the installed handler;
- the protected function is defined once at import time, not on every request;
- blocking work is passed to ``execute_async`` as a callable, so nothing starts when
  the circuit is open (an executor future passed instead would already be running).
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_fastapi import BreakerDep, circuit_status_router, install, require_available

breaker = CircuitBreaker(
    # No backend named: Redis if a URL is set, else this process's memory.
    redis_url=os.environ.get("TNM_CIRCUIT_REDIS_URL"),
    namespace=os.environ.get("TNM_CIRCUIT_NAMESPACE", "myapp:circuit"),
    default_policy=ServicePolicy(window_seconds=60, max_failures=5),
    service_policies={
        "elasticsearch": ServicePolicy(window_seconds=30, max_failures=3, open_seconds=10),
        "postgres": ServicePolicy(window_seconds=60, max_failures=5),
    },
)

app = FastAPI(title="MyApp", description="My App")
install(app, breaker)
app.include_router(circuit_status_router(prefix="/health"))

outage = {"elasticsearch": False}


@app.post("/simulate/outage")
async def simulate_outage(down: bool) -> dict[str, bool]:
    outage["elasticsearch"] = down
    return outage


@breaker.protect("elasticsearch", on_exceptions=[ConnectionError])
async def do_search(q: str) -> dict[str, Any]:
    """Stands in for an Elasticsearch query."""
    if outage["elasticsearch"]:
        raise ConnectionError("elasticsearch: connection refused")
    await asyncio.sleep(0)
    return {"hits": [q]}


@app.get("/search", dependencies=[Depends(require_available("elasticsearch"))])
async def search(q: str) -> dict[str, Any]:
    try:
        return await do_search(q)
    except ConnectionError:
        return {"hits": [], "degraded": True}


def blocking_update(data: dict[str, Any]) -> dict[str, Any]:
    """Stands in for a blocking database write."""
    return {"updated": data}


@app.post("/sync-update")
async def sync_update(payload: dict[str, Any], breaker: BreakerDep) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    return await breaker.execute_async(
        "postgres", lambda: loop.run_in_executor(None, partial(blocking_update, payload))
    )
