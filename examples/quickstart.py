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


changes: list[str] = []


def show(event: CircuitEvent) -> None:
    # Listeners run inside the call; print the change after the call's own line.
    if event.kind is EventKind.STATE_CHANGE:
        changes.append(f"  ** {event.service}: {event.previous_state} -> {event.state}")


def print_changes() -> None:
    while changes:
        print(changes.pop(0))


breaker.add_listener(show)
healthy = False


@breaker.protect("inventory-api", on_exceptions=[ConnectionError])
def fetch_stock(sku: str) -> int:
    print_changes()  # a change made by letting this call through (open -> half_open) came first
    if not healthy:
        raise ConnectionError("inventory-api: connection refused")
    return 12


def attempt(label: str) -> None:
    try:
        line = f"{label}: stock = {fetch_stock('sku-1')}"
    except CircuitOpenError as exc:
        line = f"{label}: rejected without calling ({exc.retry_after:.2f}s until a trial)"
    except ConnectionError as exc:
        line = f"{label}: failed ({exc})"
    print(line)
    print_changes()


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
