"""``tnm-circuit demo``: a flaky dependency driven through every state, in a few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

from tnm.circuit import CircuitBreaker, CircuitEvent, CircuitOpenError, EventKind, ServicePolicy

__all__ = ["run_demo"]

SERVICE = "payments-api"


def run_demo(breaker_factory: Callable[[ServicePolicy], CircuitBreaker], echo: Callable[[str], None]) -> int:
    """Closed -> open -> half-open -> open (backoff) -> half-open -> closed; returns an exit code."""
    policy = ServicePolicy(
        window_seconds=10, max_failures=3, open_seconds=1.0, backoff_multiplier=2.0, max_open_seconds=4.0
    )
    breaker = breaker_factory(policy)
    breaker.reset(SERVICE)
    seen: list[str] = []
    pending: list[str] = []

    def on_event(event: CircuitEvent) -> None:
        # Held back, then shown in the order things happened: a change caused by letting a
        # call through before the call's line, one caused by its outcome after it.
        if event.kind is EventKind.STATE_CHANGE and event.state is not None:
            seen.append(event.state.value)
            pending.append(f"   >> circuit {event.previous_state} -> {event.state}")

    def flush() -> None:
        while pending:
            echo(pending.pop(0))

    breaker.add_listener(on_event)
    healthy = False

    @breaker.protect(SERVICE, on_exceptions=[ConnectionError])
    def charge(order: int) -> str:
        flush()  # what admitting this call changed (open -> half_open) happened before it ran
        if not healthy:
            raise ConnectionError("payments-api: connection refused")
        return f"order {order} charged"

    def call(order: int) -> None:
        try:
            line = f"call {order:>2}: {charge(order)}"
        except CircuitOpenError as exc:
            line = f"call {order:>2}: rejected, not sent (retry in {exc.retry_after:.1f}s)"
        except ConnectionError as exc:
            line = f"call {order:>2}: failed ({exc})"
        echo(line)
        flush()

    def wait_out_open_time() -> None:
        delay = breaker.state(SERVICE).retry_after or 0.0
        echo(f"   .. waiting {delay:.1f}s for a trial call")
        time.sleep(delay)

    order = 0
    threshold = f"{policy.max_failures} in {policy.window_seconds:g}s"
    echo(f"{SERVICE} is down: failures count towards the threshold ({threshold})")
    for _ in range(5):
        order += 1
        call(order)
    wait_out_open_time()
    echo("the trial call still fails: the circuit re-opens, for twice as long")
    order += 1
    call(order)
    order += 1
    call(order)
    wait_out_open_time()
    healthy = True
    echo(f"{SERVICE} is back: the trial call succeeds and closes the circuit")
    for _ in range(3):
        order += 1
        call(order)
    breaker.remove_listener(on_event)
    expected = ["open", "half_open", "open", "half_open", "closed"]
    if seen != expected:
        echo(f"unexpected transitions: {seen}")
        return 1
    echo("done: closed -> open -> half_open -> open -> half_open -> closed")
    return 0
