"""Quickstart: a flaky dependency driven through closed -> open -> half-open -> closed.

Run with:  uv run python examples/quickstart.py
Uses the in-process (local) backend; takes about two seconds.
"""

from __future__ import annotations

import time

from tnm.circuit import CircuitBreaker, CircuitEvent, CircuitOpenError, EventKind, ServicePolicy

breaker = CircuitBreaker(
    default_policy=ServicePolicy(window_seconds=10, max_failures=3, open_seconds=1.0),
)


def show(event: CircuitEvent) -> None:
    if event.kind is EventKind.STATE_CHANGE:
        print(f"  ** {event.service}: {event.previous_state} -> {event.state}")


breaker.add_listener(show)
healthy = False


@breaker.protect("inventory-api", on_exceptions=[ConnectionError])
def fetch_stock(sku: str) -> int:
    if not healthy:
        raise ConnectionError("inventory-api: connection refused")
    return 12


def attempt(label: str) -> None:
    try:
        print(f"{label}: stock = {fetch_stock('sku-1')}")
    except CircuitOpenError as exc:
        print(f"{label}: rejected without calling ({exc.retry_after:.2f}s until a trial)")
    except ConnectionError as exc:
        print(f"{label}: failed ({exc})")


def main() -> None:
    global healthy
    print("The dependency is down:")
    for i in range(5):
        attempt(f"  call {i + 1}")
    print("Waiting out the open time...")
    time.sleep(breaker.state("inventory-api").retry_after or 0)
    healthy = True
    print("The dependency is back:")
    attempt("  trial call")
    attempt("  next call")
    print(f"Final state: {breaker.state('inventory-api').state}")


if __name__ == "__main__":
    main()
