"""A router listing circuit states, for health checks and dashboards (mount and guard it yourself)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from ._dependencies import BreakerDep

__all__ = ["circuit_status_router"]


def circuit_status_router(*, expose_reasons: bool = False, **router_options: Any) -> APIRouter:
    """``GET /circuits`` (every known circuit) and ``GET /circuits/{service}``.

    Each entry is ``CircuitSnapshot.to_dict()``, the same numbers the CLI and the
    metrics show (``retry_after`` to the millisecond), plus ``storage_available``:
    ``false`` while the shared store (Redis) is unreachable, when the entry is this
    process's own view rather than the fleet's (see ``CircuitBreaker.storage_available``).

    Failure reasons are left out unless ``expose_reasons=True`` (only ``last_failure.ts``
    is shown): reasons may name internal hosts or carry secrets, so expose them only
    behind an authorization dependency.
    ``router_options`` go to ``APIRouter`` (``prefix``, ``dependencies`` for auth, ``tags``…).
    The endpoints are plain ``def``: FastAPI runs them in its thread pool, so a shared
    store's reads never block the event loop.
    """
    router = APIRouter(**router_options)

    def shown(snapshot: dict[str, Any], storage_available: bool) -> dict[str, Any]:
        if not expose_reasons and snapshot.get("last_failure"):
            snapshot["last_failure"] = {"ts": snapshot["last_failure"]["ts"]}
        if snapshot["retry_after"] is not None:
            snapshot["retry_after"] = round(snapshot["retry_after"], 3)
        snapshot["storage_available"] = storage_available
        return snapshot

    @router.get("/circuits")
    def list_circuits(breaker: BreakerDep) -> list[dict[str, Any]]:
        snapshots = breaker.states()
        available = breaker.storage_available  # read after: the reads may have found the store down
        return [shown(s.to_dict(), available) for s in snapshots]

    @router.get("/circuits/{service}")
    def get_circuit(service: str, breaker: BreakerDep) -> dict[str, Any]:
        if service not in breaker.services():
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no circuit named {service!r}")
        snapshot = breaker.state(service)
        return shown(snapshot.to_dict(), breaker.storage_available)

    return router
