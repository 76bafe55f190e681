"""``circuit_dashboard_router``: a live HTML page of every circuit, served without CDN or build step."""

from __future__ import annotations

import dataclasses
import functools
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.params import Depends as DependsParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tnm.circuit import CircuitBreaker, InvalidConfigError, InvalidConfigTypeError

from .._dependencies import BreakerDep
from .._lifespan import STATE_KEY
from .actions import add_operator_routes
from .history import StateHistory
from .permission import allowed_by
from .render import Settings, View, render_live, render_page

__all__ = ["circuit_dashboard_router"]

_ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}

SECURITY_HEADERS = {
    # Everything the page needs comes from the router itself; nothing inline runs.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@functools.cache
def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("assets").joinpath(name).read_bytes()


class _Histories:
    """One ``StateHistory`` per breaker the router serves (usually one)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._by_breaker: weakref.WeakKeyDictionary[CircuitBreaker, StateHistory] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def of(self, breaker: CircuitBreaker) -> StateHistory:
        with self._lock:
            history = self._by_breaker.get(breaker)
            if history is None:
                history = self._by_breaker[breaker] = StateHistory(self._size)
        history.attach(breaker)  # again after a restart of the app (a no-op while attached)
        return history

    def detach_all(self) -> None:
        with self._lock:
            histories = list(self._by_breaker.values())
        for history in histories:
            history.detach()


async def _read(breaker: CircuitBreaker, history: StateHistory) -> View:
    # Listing a shared store's services has no async form: run it in the thread pool;
    # each circuit is then read on the async path, so the event loop never waits on I/O.
    names = await run_in_threadpool(breaker.services)
    snapshots = [await breaker.astate(name) for name in names]
    now = breaker.clock.time()
    history.observe(snapshots, now)
    return View(
        snapshots=snapshots,
        backend=breaker.backend.name,
        store_ok=breaker.storage_available,
        history=history.newest_first(),
        now=now,
        policies={name: (breaker.policy_for(name), breaker.policy_source(name)) for name in names},
    )


def circuit_dashboard_router(
    *,
    prefix: str = "/circuits",
    expose_reasons: bool = False,
    authorize: Callable[..., Any] | None = None,
    refresh_seconds: float = 1.0,
    noscript_refresh_seconds: int = 5,
    history_size: int = 50,
    title: str = "Circuits",
    **router_options: Any,
) -> APIRouter:
    """A live page of every circuit the app's breaker knows, at ``{prefix}/``.

    The page shows each circuit's state (colour and text), failures in the window
    against ``max_failures``, the time until a trial call, the last failure's time
    (its reason only with ``expose_reasons=True``), the store's health and the newest
    ``history_size`` state changes. With scripts on it re-reads its live part every
    ``refresh_seconds`` (short polling, ``GET {prefix}/live``); with scripts off the
    browser reloads the whole page every ``noscript_refresh_seconds``. Its stylesheet
    and script are served by the router (``{prefix}/assets/…``): no CDN, no build step.

    Read-only unless ``authorize`` is given: a FastAPI dependency (what you would put
    in ``Depends(...)``) that raises an ``HTTPException`` for a caller who may not act.
    Only then are ``POST {prefix}/open?service=…``, ``POST {prefix}/disable?service=…``,
    ``POST {prefix}/reset?service=…``, ``POST {prefix}/policy?service=…`` (a form of
    policy fields: fleet-wide on Redis, this process on the local backend) and
    ``POST {prefix}/clear-policy?service=…`` routed; each runs ``authorize`` and refuses
    requests sent from other sites. The Open, Disable and Reset buttons and the policy
    form are rendered only for a request that ``authorize`` lets through: others see the
    read-only page. Every row shows the thresholds in force and their source.
    To restrict who sees the page, pass ``dependencies=[Depends(...)]`` like any
    router option.

    The history is fed by a listener registered on the breaker (at startup when the
    app was set up with ``install``, else at the first request) and by the states the
    page reads, so changes made by other processes appear once the page sees them.
    """
    if not refresh_seconds > 0:
        raise InvalidConfigError("refresh_seconds", f"must be > 0, got {refresh_seconds!r}")
    if not (isinstance(noscript_refresh_seconds, int) and noscript_refresh_seconds >= 1):
        raise InvalidConfigError(
            "noscript_refresh_seconds", f"must be a whole number >= 1, got {noscript_refresh_seconds!r}"
        )
    if authorize is not None and not (isinstance(authorize, DependsParam) or callable(authorize)):
        raise InvalidConfigTypeError(
            "authorize", f"must be a FastAPI dependency (a callable, or Depends(...)), got {authorize!r}"
        )
    if not (isinstance(history_size, int) and history_size >= 1):
        raise InvalidConfigError("history_size", f"must be an int >= 1, got {history_size!r}")
    settings = Settings(
        title, refresh_seconds, noscript_refresh_seconds, expose_reasons, authorize is not None
    )
    histories = _Histories(history_size)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        breaker = getattr(getattr(app, "state", None), STATE_KEY, None)
        if isinstance(breaker, CircuitBreaker):
            histories.of(breaker)
        try:
            yield None
        finally:
            histories.detach_all()

    router = APIRouter(prefix=prefix, lifespan=lifespan, **router_options)

    if prefix:

        @router.get("", include_in_schema=False)
        async def with_slash(request: Request) -> RedirectResponse:
            # The page's links are relative to "{prefix}/". The redirect is relative too
            # ("circuits/" from ".../circuits"), so it holds behind a proxy that rewrites paths.
            last = request.url.path.rsplit("/", 1)[-1]
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"{last}/{query}", status_code=status.HTTP_307_TEMPORARY_REDIRECT)

    async def read_only() -> bool:
        return False

    # Forms only for a request that authorize lets through (asked without refusing the page).
    may_act = read_only if authorize is None else allowed_by(authorize)

    @router.get("/", response_class=HTMLResponse, name="circuit_dashboard")
    async def page(breaker: BreakerDep, operator: bool = Depends(may_act)) -> HTMLResponse:
        view = await _read(breaker, histories.of(breaker))
        shown = dataclasses.replace(settings, operator=operator)
        return HTMLResponse(render_page(view, shown), headers=SECURITY_HEADERS)

    @router.get("/live", response_class=HTMLResponse, name="circuit_dashboard_live")
    async def live(breaker: BreakerDep, operator: bool = Depends(may_act)) -> HTMLResponse:
        view = await _read(breaker, histories.of(breaker))
        shown = dataclasses.replace(settings, operator=operator)
        return HTMLResponse(render_live(view, shown), headers=SECURITY_HEADERS)

    @router.get("/assets/{name}", include_in_schema=False, name="circuit_dashboard_asset")
    async def asset(name: str) -> Response:
        media_type = _ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND)
        return Response(
            _asset(name),
            media_type=media_type,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
        )

    if authorize is not None:
        add_operator_routes(router, authorize, expose_reasons)
    return router
