"""httpx with a circuit per upstream: a flaky inventory API through closed -> open -> half-open -> closed.

Run with:  uv run python examples/httpx_client.py
Takes about a second. The upstream is simulated in process by ``httpx.MockTransport``, so
nothing goes to the network; in your app, leave ``transport=`` out (httpx's own
``AsyncHTTPTransport`` is used) or pass the one you configured (retries, proxies, HTTP/2).
"""

from __future__ import annotations

import asyncio

import httpx

from tnm.circuit import CircuitBreaker, CircuitEvent, EventKind, ServicePolicy
from tnm.circuit_httpx import AsyncCircuitBreakerTransport, CircuitOpenRequestError

INVENTORY = "inventory.example.com:443"  # the circuit's name: the upstream's host:port

breaker = CircuitBreaker(
    default_policy=ServicePolicy(window_seconds=60, max_failures=5),
    service_policies={INVENTORY: ServicePolicy(window_seconds=10, max_failures=3, open_seconds=0.5)},
)
upstream = {"healthy": False, "received": 0}


async def inventory_api(request: httpx.Request) -> httpx.Response:
    """Stands in for the real inventory API."""
    upstream["received"] += 1
    if not upstream["healthy"]:
        return httpx.Response(503, headers={"Retry-After": "1"}, text="down for maintenance")
    return httpx.Response(200, json={"sku": "sku-1", "stock": 12})


def inventory_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url="https://inventory.example.com",
        transport=AsyncCircuitBreakerTransport(breaker, transport=transport),
        timeout=5.0,
    )


async def attempt(client: httpx.AsyncClient, label: str) -> None:
    try:
        response = await client.get("/stock/sku-1")
    except CircuitOpenRequestError as exc:  # an httpx.TransportError too
        print(f"{label}: refused, not sent ({exc.retry_after:.2f}s until a trial)")
    except httpx.TransportError as exc:
        print(f"{label}: failed ({type(exc).__name__})")
    else:
        print(f"{label}: HTTP {response.status_code} {response.text}")


def show(event: CircuitEvent) -> None:
    if event.kind is EventKind.STATE_CHANGE:
        print(f"  ** {event.service}: {event.previous_state} -> {event.state}")


async def main() -> None:
    breaker.add_listener(show)
    async with inventory_client(httpx.MockTransport(inventory_api)) as client:
        print("The upstream answers 503:")
        for i in range(5):
            await attempt(client, f"  request {i + 1}")
        print(f"The upstream received {upstream['received']} of the 5 requests.")
        print("Waiting out the open time...")
        await asyncio.sleep((await breaker.astate(INVENTORY)).retry_after or 0)
        upstream["healthy"] = True
        print("The upstream is back:")
        await attempt(client, "  trial request")
        await attempt(client, "  next request")
    print(f"Final state: {(await breaker.astate(INVENTORY)).state}")


if __name__ == "__main__":
    asyncio.run(main())
