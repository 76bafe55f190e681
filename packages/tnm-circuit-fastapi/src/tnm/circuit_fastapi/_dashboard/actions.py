"""The operator routes (open, disable, reset): only built when the user passes an authorization dependency."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.params import Depends as DependsParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tnm.circuit import CircuitBreaker, InvalidConfigError

from .._dependencies import BreakerDep
from .policy_form import parse_form

__all__ = ["add_operator_routes", "apply_form", "same_origin"]

OPEN_REASON = "opened from the dashboard"
DISABLE_REASON = "disabled from the dashboard"


def same_origin(request: Request) -> None:
    """Refuse a form posted from another site (cross-site request forgery).

    Browsers send ``Sec-Fetch-Site`` (older ones ``Origin``) with every POST; a
    request from another site is refused even when the browser would attach the
    operator's credentials. Requests without those headers (scripts, curl) are left to the
    authorization dependency.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        # Set by the browser itself from the page that sent the form: proxies do not change it.
        if site not in ("same-origin", "none"):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")
        return
    origin = request.headers.get("origin")  # older browsers
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")


async def _known_service(service: str, breaker: BreakerDep) -> str:
    """The ``service`` query parameter, if the breaker knows such a circuit (else 404)."""
    if service not in await run_in_threadpool(breaker.services):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no circuit named {service!r}")
    return service


KnownService = Annotated[str, Depends(_known_service)]


def _answer(request: Request, breaker: CircuitBreaker, service: str, expose_reasons: bool) -> Response:
    """JSON for the page's script (``Accept: application/json``); a redirect to the page for a form."""
    if "application/json" in request.headers.get("accept", ""):
        snapshot = breaker.state(service).to_dict()
        if not expose_reasons and snapshot.get("last_failure"):
            snapshot["last_failure"] = {"ts": snapshot["last_failure"]["ts"]}
        return JSONResponse(snapshot)
    return RedirectResponse("./", status_code=status.HTTP_303_SEE_OTHER)


def add_operator_routes(router: APIRouter, authorize: Callable[..., Any], expose_reasons: bool) -> None:
    """``POST open?service=…`` (fleet-wide force open), ``POST disable?service=…`` (fleet-wide:
    every call passes, nothing counted) and ``POST reset?service=…``.

    Each runs ``authorize`` first, then the same-origin check. They are plain ``def``:
    the breaker's operations are synchronous, so FastAPI runs them in its thread pool.
    """
    guard = authorize if isinstance(authorize, DependsParam) else Depends(authorize)
    dependencies = [guard, Depends(same_origin)]

    @router.post("/open", dependencies=dependencies, name="circuit_dashboard_open")
    def open_circuit(request: Request, breaker: BreakerDep, service: KnownService) -> Response:
        breaker.force_open(service, OPEN_REASON)
        return _answer(request, breaker, service, expose_reasons)

    @router.post("/disable", dependencies=dependencies, name="circuit_dashboard_disable")
    def disable_circuit(request: Request, breaker: BreakerDep, service: KnownService) -> Response:
        breaker.disable(service, DISABLE_REASON)
        return _answer(request, breaker, service, expose_reasons)

    @router.post("/reset", dependencies=dependencies, name="circuit_dashboard_reset")
    def reset_circuit(request: Request, breaker: BreakerDep, service: KnownService) -> Response:
        breaker.reset(service)
        return _answer(request, breaker, service, expose_reasons)

    @router.post("/policy", dependencies=dependencies, name="circuit_dashboard_policy")
    async def change_policy(request: Request, breaker: BreakerDep, service: KnownService) -> Response:
        body = await request.body()
        try:
            await run_in_threadpool(apply_form, breaker, service, body)
        except InvalidConfigError as exc:
            return _refused(request, f"{exc.field}: {exc.message}")
        return _answer(request, breaker, service, expose_reasons)

    @router.post("/clear-policy", dependencies=dependencies, name="circuit_dashboard_policy_clear")
    def clear_policy(request: Request, breaker: BreakerDep, service: KnownService) -> Response:
        source = breaker.policy_source(service)
        if source != "code":
            breaker.clear_policy(service, fleet=source == "fleet")
        return _answer(request, breaker, service, expose_reasons)


def apply_form(breaker: CircuitBreaker, service: str, body: bytes) -> None:
    """Apply the policy form's changed fields: fleet-wide on Redis, in this process otherwise.
    Every value is validated as ``ServicePolicy`` validates it; an invalid one raises
    ``InvalidConfigError`` naming the field, and nothing is stored or applied."""
    current = breaker.policy_for(service)
    changed = parse_form(body, current)
    if not changed:
        return
    breaker.set_policy(service, changed, fleet=breaker.backend.name == "redis")


def _refused(request: Request, message: str) -> Response:
    """A 400 naming the field: JSON for the page's script, a short page for a plain form."""
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"detail": message}, status_code=status.HTTP_400_BAD_REQUEST)
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Refused</title></head>'
        f'<body><p>Refused: {escape(message)}</p><p><a href="./">Back to the circuits</a></p></body></html>',
        status_code=status.HTTP_400_BAD_REQUEST,
    )
