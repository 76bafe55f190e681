"""tnm.circuit_fastapi through TestClient, httpx's ASGI transport and a real uvicorn server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from tnm.circuit import CircuitBreaker, CircuitError, ReturnValuePolicy, ServicePolicy
from tnm.circuit.testing import ManualClock, trip
from tnm.circuit_fastapi import (
    BreakerDep,
    add_exception_handlers,
    breaker_lifespan,
    circuit_status_router,
    install,
    require_available,
)

from ..redis_server import free_port


def build_app(breaker: CircuitBreaker, **install_options: Any) -> tuple[FastAPI, dict[str, int]]:
    app = FastAPI()
    install(app, breaker, **install_options)
    calls = {"search": 0}

    @app.exception_handler(ConnectionError)
    async def upstream_failed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "upstream failed"}, status_code=502)

    @app.get("/search", dependencies=[Depends(require_available("elasticsearch"))])
    async def search(q: str) -> dict[str, str]:
        calls["search"] += 1
        return {"q": q}

    @app.get("/items")
    @breaker.protect("inventory", on_exceptions=[ConnectionError])
    async def items(q: str, fail: bool = False) -> dict[str, str]:
        if fail:
            raise ConnectionError("inventory down")
        return {"q": q}

    @app.get("/sync-items")
    @breaker.protect("inventory")
    def sync_items(q: str) -> dict[str, str]:
        return {"q": q}

    @app.get("/status-code")
    @breaker.protect("upstream", on_retval_policy=ReturnValuePolicy(retval_in=[500]))
    async def status_code(code: int) -> int:
        return code

    @app.get("/who")
    async def who(breaker: BreakerDep) -> dict[str, str]:
        return {"backend": breaker.backend.name}

    app.include_router(circuit_status_router(prefix="/health"))
    return app, calls


@pytest.fixture
def local_breaker(clock: ManualClock) -> CircuitBreaker:
    return CircuitBreaker(
        clock=clock,
        default_policy=ServicePolicy(window_seconds=60, max_failures=2, open_seconds=9.2),
    )


class TestLifespan:
    def test_lifespan_initializes_and_closes(self) -> None:
        """The lifespan initializes the breaker at startup and closes it at shutdown."""
        breaker = CircuitBreaker()
        app = FastAPI(lifespan=breaker_lifespan(breaker))

        @app.get("/who")
        async def who(b: BreakerDep) -> dict[str, bool]:
            return {"same": b is breaker, "ready": b.initialized}

        with TestClient(app) as client:
            assert client.get("/who").json() == {"same": True, "ready": True}
        assert not breaker.initialized

    def test_wraps_the_apps_own_lifespan(self) -> None:
        """The app's own lifespan runs inside, and its state is merged."""
        events: list[str] = []

        @asynccontextmanager
        async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
            events.append("start")
            yield {"db": "connection"}
            events.append("stop")

        breaker = CircuitBreaker()
        app = FastAPI(lifespan=breaker_lifespan(breaker, app_lifespan))

        @app.get("/")
        async def root(request: Request, b: BreakerDep) -> dict[str, Any]:
            return {"db": request.state.db, "breaker": b is breaker}

        with TestClient(app) as client:
            assert client.get("/").json() == {"db": "connection", "breaker": True}
        assert events == ["start", "stop"]

    def test_wraps_an_async_generator_function(self) -> None:
        """The app's own lifespan may be a bare async generator function, as FastAPI accepts."""
        events: list[str] = []

        async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
            events.append("start")
            yield {"db": "connection"}
            events.append("stop")

        breaker = CircuitBreaker()
        app = FastAPI(lifespan=breaker_lifespan(breaker, app_lifespan))

        @app.get("/")
        async def root(request: Request, b: BreakerDep) -> dict[str, Any]:
            return {"db": request.state.db, "breaker": b is breaker}

        with TestClient(app) as client:
            assert client.get("/").json() == {"db": "connection", "breaker": True}
        assert events == ["start", "stop"]
        assert not breaker.initialized

    def test_wraps_a_generator_function(self) -> None:
        """The app's own lifespan may be a plain generator function that yields no state."""
        events: list[str] = []

        def app_lifespan(app: FastAPI) -> Iterator[None]:
            events.append("start")
            yield
            events.append("stop")

        breaker = CircuitBreaker()
        app = FastAPI(lifespan=breaker_lifespan(breaker, app_lifespan))

        @app.get("/")
        async def root(b: BreakerDep) -> bool:
            return b is breaker

        with TestClient(app) as client:
            assert client.get("/").json() is True
        assert events == ["start", "stop"]

    def test_lifespan_plus_handlers_without_install(self) -> None:
        """breaker_lifespan + add_exception_handlers is the same as install()."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=1, open_seconds=3))
        app = FastAPI(lifespan=breaker_lifespan(breaker))
        add_exception_handlers(app)

        @app.get("/")
        async def root(b: BreakerDep) -> int:
            return await b.execute_async("svc", lambda: asyncio.sleep(0, result=1))

        trip(breaker, "svc")
        with TestClient(app) as client:
            response = client.get("/")
        assert (response.status_code, response.headers["Retry-After"]) == (503, "3")

    def test_missing_setup_is_a_lookup_error(self) -> None:
        """BreakerDep on an app without the lifespan raises a clear LookupError."""
        app = FastAPI()

        @app.get("/")
        async def root(b: BreakerDep) -> None: ...

        with TestClient(app) as client, pytest.raises(LookupError, match="breaker_lifespan"):
            client.get("/")

    def test_unreachable_store_fails_startup_unless_degraded_allowed(self) -> None:
        """Redis down at startup fails startup; start_degraded=True starts anyway."""
        url = f"redis://:pw@127.0.0.1:{free_port()}/0"
        breaker = CircuitBreaker("redis", redis_url=url, socket_timeout=0.2)
        app = FastAPI(lifespan=breaker_lifespan(breaker))
        with pytest.raises(CircuitError), TestClient(app):
            pass
        degraded = CircuitBreaker("redis", redis_url=url, socket_timeout=0.2)
        app2, _ = build_app(degraded, start_degraded=True)
        with TestClient(app2) as client:
            assert client.get("/sync-items", params={"q": "x"}).json() == {"q": "x"}

    def test_two_apps_do_not_interfere(self) -> None:
        """Two apps with two breakers in one process keep separate circuits."""
        first, second = CircuitBreaker(), CircuitBreaker()
        app1, _ = build_app(first)
        app2, _ = build_app(second)
        trip(first, "elasticsearch")
        with TestClient(app1) as c1, TestClient(app2) as c2:
            assert c1.get("/search", params={"q": "a"}).status_code == 503
            assert c2.get("/search", params={"q": "a"}).status_code == 200


class TestResponses:
    def test_require_available_rejects_before_the_endpoint(
        self, local_breaker: CircuitBreaker, clock: ManualClock
    ) -> None:
        """An open circuit answers 503 with Retry-After rounded up; the endpoint does not run."""
        app, calls = build_app(local_breaker)
        with TestClient(app) as client:
            assert client.get("/search", params={"q": "a"}).status_code == 200
            local_breaker.record_failure("elasticsearch", "es-internal-host:9200 refused")
            local_breaker.record_failure("elasticsearch", "es-internal-host:9200 refused")
            response = client.get("/search", params={"q": "a"})
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "10"  # 9.2 s rounded up
            body = response.json()
            assert body["service"] == "elasticsearch"
            assert body["retry_after"] == pytest.approx(9.2)
            assert "es-internal-host" not in response.text
            assert calls["search"] == 1
            clock.advance(9.2)
            assert client.get("/search", params={"q": "b"}).status_code == 200

    def test_reasons_only_when_asked(self, local_breaker: CircuitBreaker) -> None:
        """expose_reasons=True adds the last failure's reason to the 503 body."""
        app, _ = build_app(local_breaker, expose_reasons=True)
        trip(local_breaker, "elasticsearch", reason="cluster red")
        with TestClient(app) as client:
            assert client.get("/search", params={"q": "a"}).json()["reason"] == "cluster red"

    def test_protect_on_endpoints_keeps_parameters(self, local_breaker: CircuitBreaker) -> None:
        """@breaker.protect on sync and async endpoints keeps query parameters; open -> 503."""
        app, _ = build_app(local_breaker)
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/items", params={"q": "x"}).json() == {"q": "x"}
            assert client.get("/sync-items", params={"q": "y"}).json() == {"q": "y"}
            assert client.get("/items").status_code == 422  # q is still required
            for _ in range(2):
                assert client.get("/items", params={"q": "x", "fail": True}).status_code == 502
            response = client.get("/sync-items", params={"q": "y"})
            assert response.status_code == 503
            assert "Retry-After" in response.headers

    def test_return_value_policy_maps_to_502(self, local_breaker: CircuitBreaker) -> None:
        """ReturnValuePolicyError becomes 502 by default, or the status the user picks."""
        app, _ = build_app(local_breaker)
        with TestClient(app) as client:
            assert client.get("/status-code", params={"code": 200}).json() == 200
            assert client.get("/status-code", params={"code": 500}).status_code == 502
        app2, _ = build_app(CircuitBreaker(), retval_status=503)
        with TestClient(app2) as client:
            assert client.get("/status-code", params={"code": 500}).status_code == 503

    def test_forced_open_has_no_retry_after(self, local_breaker: CircuitBreaker) -> None:
        """A circuit held open by an operator answers 503 without Retry-After."""
        app, _ = build_app(local_breaker)
        local_breaker.force_open("elasticsearch", "maintenance")
        with TestClient(app) as client:
            response = client.get("/search", params={"q": "a"})
        assert response.status_code == 503
        assert "Retry-After" not in response.headers
        assert response.json()["retry_after"] is None

    def test_status_router(self, local_breaker: CircuitBreaker) -> None:
        """The status router lists circuits without reasons; unknown services are 404."""
        app, _ = build_app(local_breaker)
        trip(local_breaker, "elasticsearch", reason="secret-host down")
        with TestClient(app) as client:
            listing = client.get("/health/circuits").json()
            assert [c["service"] for c in listing] == ["elasticsearch", "inventory", "upstream"]
            es = client.get("/health/circuits/elasticsearch").json()
            assert es["state"] == "open"
            assert es["failures"] == 2
            assert "reason" not in es["last_failure"]
            assert client.get("/health/circuits/nope").status_code == 404


class TestAsgiTransport:
    async def _exercise(self, app: FastAPI, breaker: CircuitBreaker) -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/items", params={"q": "a"})).status_code == 200
                for _ in range(2):
                    await client.get("/items", params={"q": "a", "fail": True})
                response = await client.get("/items", params={"q": "a"})
                assert response.status_code == 503
                assert int(response.headers["Retry-After"]) >= 1
                assert (await client.get("/who")).json() == {"backend": breaker.backend.name}

    @pytest.mark.asyncio
    async def test_local_backend(self) -> None:
        """Through httpx.AsyncClient + ASGITransport on the local backend."""
        breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=2, open_seconds=5))
        app, _ = build_app(breaker)
        await self._exercise(app, breaker)

    @pytest.mark.asyncio
    async def test_redis_backend(self, redis_url: str) -> None:
        """The same on the Redis backend (async path: redis.asyncio)."""
        breaker = CircuitBreaker(
            "redis", redis_url=redis_url, namespace="fastapi",
            default_policy=ServicePolicy(max_failures=2, open_seconds=5),
        )  # fmt: skip
        app, _ = build_app(breaker)
        await self._exercise(app, breaker)

    def test_testclient_redis_backend(self, redis_url: str) -> None:
        """TestClient with the lifespan on the Redis backend: 503 once open, shared via Redis."""
        breaker = CircuitBreaker(
            "redis", redis_url=redis_url, namespace="fastapi-tc",
            default_policy=ServicePolicy(max_failures=2, open_seconds=5),
        )  # fmt: skip
        app, _ = build_app(breaker)
        with TestClient(app) as client:
            ops = CircuitBreaker("redis", redis_url=redis_url, namespace="fastapi-tc")
            ops.initialize()
            ops.force_open("elasticsearch", "ops")
            ops.close()
            deadline = time.monotonic() + 5
            while client.get("/search", params={"q": "a"}).status_code != 503:
                assert time.monotonic() < deadline
                time.sleep(0.01)


@pytest.fixture
def live_server() -> Iterator[Callable[[FastAPI], str]]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: FastAPI) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_real_http_server_200_503_200(live_server: Callable[[FastAPI], str]) -> None:
    """Through uvicorn on 127.0.0.1: 200, then 503 with Retry-After while open, then 200 again."""
    clock = ManualClock()  # (the server's thread reads it too: the open time passes when told)
    breaker = CircuitBreaker(default_policy=ServicePolicy(max_failures=2, open_seconds=1.0), clock=clock)
    app, _ = build_app(breaker)
    base = live_server(app)
    with httpx.Client(base_url=base, timeout=5) as client:
        assert client.get("/items", params={"q": "a"}).status_code == 200
        for _ in range(2):
            assert client.get("/items", params={"q": "a", "fail": True}).status_code == 502
        response = client.get("/items", params={"q": "a"})
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        clock.advance(0.5)
        assert client.get("/items", params={"q": "a"}).status_code == 503
        clock.advance(0.5)
        assert client.get("/items", params={"q": "a"}).status_code == 200


def test_event_loop_not_blocked_by_is_available(redis_url: str) -> None:
    """require_available on Redis uses the async path (ais_available), never a sync round trip."""
    breaker = CircuitBreaker("redis", redis_url=redis_url, namespace="fastapi-loop")
    calls: list[str] = []
    original = breaker.is_available
    breaker.is_available = lambda service: calls.append(service) or original(service)  # type: ignore[method-assign]
    app, _ = build_app(breaker)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            breaker.force_open("elasticsearch", "x")
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/search", params={"q": "a"})).status_code == 503

    asyncio.run(main())
    assert calls == []


class TestStatusDetails:
    def test_retry_after_is_rounded_to_the_millisecond(
        self, local_breaker: CircuitBreaker, clock: ManualClock
    ) -> None:
        """503 bodies and the status router give retry_after to the millisecond, not 9.19998489."""
        app, _ = build_app(local_breaker)
        trip(local_breaker, "elasticsearch")
        clock.advance(0.0000151)
        with TestClient(app) as client:
            assert client.get("/search", params={"q": "a"}).json()["retry_after"] == 9.2
            listed = client.get("/health/circuits").json()
            assert [c["retry_after"] for c in listed if c["service"] == "elasticsearch"] == [9.2]
            assert client.get("/health/circuits/elasticsearch").json()["retry_after"] == 9.2

    def test_local_store_is_always_available(self, local_breaker: CircuitBreaker) -> None:
        """Each status entry says storage_available: true on the local backend."""
        app, _ = build_app(local_breaker)
        with TestClient(app) as client:
            listed = client.get("/health/circuits").json()
            assert listed
            assert all(c["storage_available"] is True for c in listed)

    @pytest.mark.slow
    def test_redis_outage_shows_in_the_status_router(self, redis_url: str, redis_server: Any) -> None:
        """While Redis is down, /health/circuits says storage_available: false instead of a bare closed."""
        breaker = CircuitBreaker("redis", redis_url=redis_url, namespace="fastapi-health", socket_timeout=0.2)
        app, _ = build_app(breaker)
        with TestClient(app) as client:
            assert all(c["storage_available"] for c in client.get("/health/circuits").json())
            redis_server.stop()
            listed = client.get("/health/circuits").json()
            assert listed
            assert all(c["storage_available"] is False for c in listed)
            assert client.get("/health/circuits/inventory").json()["storage_available"] is False
