"""aiohttp with a circuit per upstream: a flaky inventory API through closed -> open -> half-open -> closed.

Run with:  uv run python examples/aiohttp_client.py
Takes about a second. The inventory API is a small aiohttp server on 127.0.0.1 started by this
script; in your app, add the middleware to the ClientSession you already use.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from tnm.circuit import CircuitBreaker, CircuitEvent, EventKind, ServicePolicy
from tnm.circuit_aiohttp import CircuitBreakerMiddleware, CircuitOpenClientError

upstream = {"healthy": False, "received": 0}


async def inventory_api(request: web.Request) -> web.Response:
    """Stands in for the real inventory API: 503 until it is healthy again."""
    upstream["received"] += 1
    if not upstream["healthy"]:
        return web.Response(status=503, headers={"Retry-After": "1"}, text="down")
    return web.json_response({"sku": "sku-1", "stock": 12})


async def attempt(session: aiohttp.ClientSession, url: str, label: str) -> None:
    try:
        async with session.get(url) as response:
            print(f"{label}: HTTP {response.status} {await response.text()}")
    except CircuitOpenClientError as exc:  # an aiohttp.ClientConnectionError too
        print(f"{label}: refused, not sent ({exc.retry_after:.2f}s until a trial)")
    except aiohttp.ClientError as exc:
        print(f"{label}: failed ({type(exc).__name__})")


def show(event: CircuitEvent) -> None:
    if event.kind is EventKind.STATE_CHANGE:
        print(f"  ** {event.service}: {event.previous_state} -> {event.state}")


async def main() -> None:
    app = web.Application()
    app.router.add_get("/stock/{sku}", inventory_api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    inventory = f"127.0.0.1:{port}"  # the circuit's name: the upstream's host:port
    breaker = CircuitBreaker(
        default_policy=ServicePolicy(window_seconds=60, max_failures=5),
        service_policies={inventory: ServicePolicy(window_seconds=10, max_failures=3, open_seconds=0.5)},
    )
    breaker.add_listener(show)
    url = f"http://{inventory}/stock/sku-1"
    try:
        middleware = CircuitBreakerMiddleware(breaker)
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(middlewares=[middleware], timeout=timeout) as session:
            print("The upstream answers 503:")
            for i in range(5):
                await attempt(session, url, f"  request {i + 1}")
            print(f"The upstream received {upstream['received']} of the 5 requests.")
            print("Waiting out the open time...")
            await asyncio.sleep((await breaker.astate(inventory)).retry_after or 0)
            upstream["healthy"] = True
            print("The upstream is back:")
            await attempt(session, url, "  trial request")
            await attempt(session, url, "  next request")
        print(f"Final state: {(await breaker.astate(inventory)).state}")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
