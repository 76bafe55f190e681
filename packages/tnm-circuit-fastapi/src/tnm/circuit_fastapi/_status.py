"""A router listing circuit states, for health checks and dashboards (mount and guard it yourself)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from ._dependencies import BreakerDep

__all__ = ["circuit_status_router"]


def circuit_status_router(*, expose_reasons: bool = False, **router_options: Any) -> APIRouter:
    """``GET /circuits`` (every known circuit) and ``GET /circuits/{service}``.

    Each entry is ``CircuitSnapshot.to_dict()``: the same numbers the CLI and the
    metrics show. Failure reasons are left out unless ``expose_reasons=True``.
    ``router_options`` go to ``APIRouter`` (``prefix``, ``dependencies`` for auth, ``tags``…).
    The endpoints are plain ``def``: FastAPI runs them in its thread pool, so a shared
    store's reads never block the event loop.
    """
    router = APIRouter(**router_options)

    def shown(snapshot: dict[str, Any]) -> dict[str, Any]:
        if not expose_reasons and snapshot.get("last_failure"):
            snapshot["last_failure"] = {"ts": snapshot["last_failure"]["ts"]}
        return snapshot

    @router.get("/circuits")
    def list_circuits(breaker: BreakerDep) -> list[dict[str, Any]]:
        return [shown(s.to_dict()) for s in breaker.states()]

    @router.get("/circuits/{service}")
    def get_circuit(service: str, breaker: BreakerDep) -> dict[str, Any]:
        if service not in breaker.backend.services():
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no circuit named {service!r}")
        return shown(breaker.state(service).to_dict())

    return router
