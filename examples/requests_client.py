"""requests with a circuit per upstream: a flaky inventory API through closed -> open -> half-open -> closed.

Run with:  uv run python examples/requests_client.py
Takes about a second. The inventory API is a small HTTP server on 127.0.0.1 started by this
script; in your app, mount the adapter on the Session you already use.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tnm.circuit import CircuitBreaker, CircuitEvent, EventKind, ServicePolicy
from tnm.circuit_requests import CircuitBreakerAdapter, CircuitOpenRequestError

upstream = {"healthy": False, "received": 0}


class InventoryAPI(BaseHTTPRequestHandler):
    """Stands in for the real inventory API: 503 until it is healthy again."""

    def do_GET(self) -> None:
        upstream["received"] += 1
        status, body = (200, b'{"sku": "sku-1", "stock": 12}') if upstream["healthy"] else (503, b"down")
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep the output readable
        pass


def attempt(session: requests.Session, url: str, label: str) -> None:
    try:
        response = session.get(url, timeout=5)
    except CircuitOpenRequestError as exc:  # a requests.ConnectionError too
        print(f"{label}: refused, not sent ({exc.retry_after:.2f}s until a trial)")
    except requests.ConnectionError as exc:
        print(f"{label}: failed ({type(exc).__name__})")
    else:
        print(f"{label}: HTTP {response.status_code} {response.text}")


def show(event: CircuitEvent) -> None:
    if event.kind is EventKind.STATE_CHANGE:
        print(f"  ** {event.service}: {event.previous_state} -> {event.state}")


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), InventoryAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    inventory = f"127.0.0.1:{server.server_port}"  # the circuit's name: the upstream's host:port
    breaker = CircuitBreaker(
        default_policy=ServicePolicy(window_seconds=60, max_failures=5),
        service_policies={inventory: ServicePolicy(window_seconds=10, max_failures=3, open_seconds=0.5)},
    )
    breaker.add_listener(show)
    url = f"http://{inventory}/stock/sku-1"
    try:
        with requests.Session() as session:
            adapter = CircuitBreakerAdapter(breaker)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            print("The upstream answers 503:")
            for i in range(5):
                attempt(session, url, f"  request {i + 1}")
            print(f"The upstream received {upstream['received']} of the 5 requests.")
            print("Waiting out the open time...")
            time.sleep(breaker.state(inventory).retry_after or 0)
            upstream["healthy"] = True
            print("The upstream is back:")
            attempt(session, url, "  trial request")
            attempt(session, url, "  next request")
        print(f"Final state: {breaker.state(inventory).state}")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
