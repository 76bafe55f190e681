"""A live circuit dashboard, with simulated traffic to watch.

Run:    uv run uvicorn examples.dashboard:app
Open:   http://127.0.0.1:8000/circuits/
Break:  curl -X POST 'localhost:8000/simulate/outage?service=payments&down=true'
Mend:   curl -X POST 'localhost:8000/simulate/outage?service=payments&down=false'

The app calls three made-up services five times a second. Take one down and watch its
row turn open, then half-open and closed again once it is back.

The page is read-only. Set TNM_DASHBOARD_PASSWORD to require a login (user "operator")
for the page and to add the Open, Disable and Reset buttons, and each row's policy form (Apply,
and Clear override once a policy was changed). With TNM_CIRCUIT_REDIS_URL set, state
lives in Redis and the page shows the circuits of every process sharing the store: run a
second copy on another port and break a service in one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy
from tnm.circuit_fastapi import circuit_dashboard_router, install

SERVICES = ("inventory", "payments", "search")

breaker = CircuitBreaker(
    # No backend named: Redis if a URL is set, else this process's memory.
    redis_url=os.environ.get("TNM_CIRCUIT_REDIS_URL"),
    namespace=os.environ.get("TNM_CIRCUIT_NAMESPACE", "dashboard-demo:circuit"),
    default_policy=ServicePolicy(window_seconds=30, max_failures=5, open_seconds=5),
    service_policies={"payments": ServicePolicy(window_seconds=30, max_failures=3, open_seconds=8)},
)

outage = dict.fromkeys(SERVICES, False)


async def call(service: str) -> str:
    """Stands in for a request to ``service``; fails while it is "down" (and now and then)."""
    if outage[service] or random.random() < 0.02:
        raise ConnectionError(f"{service}: connection refused")
    await asyncio.sleep(0)
    return "ok"


async def traffic() -> None:
    while True:
        for service in SERVICES:
            with contextlib.suppress(ConnectionError, CircuitOpenError):
                await breaker.execute_async(service, call, service)
        await asyncio.sleep(0.2)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    task = asyncio.create_task(traffic())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


app = FastAPI(title="Circuit dashboard demo", lifespan=lifespan)
install(app, breaker)  # the breaker's lifespan wraps the traffic one: it starts first

PASSWORD = os.environ.get("TNM_DASHBOARD_PASSWORD")
basic = HTTPBasic(realm="circuits")


def operator(credentials: Annotated[HTTPBasicCredentials, Depends(basic)]) -> None:
    """Only the "operator" user, with TNM_DASHBOARD_PASSWORD, may see the page and act."""
    user_ok = secrets.compare_digest(credentials.username.encode(), b"operator")
    password_ok = secrets.compare_digest(credentials.password.encode(), (PASSWORD or "").encode())
    if not (PASSWORD and user_ok and password_ok):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "operators only",
            headers={"WWW-Authenticate": 'Basic realm="circuits"'},
        )


if PASSWORD:
    app.include_router(
        circuit_dashboard_router(prefix="/circuits", authorize=operator, dependencies=[Depends(operator)])
    )
else:
    app.include_router(circuit_dashboard_router(prefix="/circuits"))


@app.post("/simulate/outage")
async def simulate_outage(service: str, down: bool) -> dict[str, Any]:
    if service not in outage:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no service named {service!r}")
    outage[service] = down
    return outage
