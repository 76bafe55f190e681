"""A queue worker on tnm.circuit_cli's helpers: it waits out an open circuit and drops nothing.

Run:   uv run python examples/cli_worker.py --items 20 --fail-first 4
       uv run python examples/cli_worker.py --backend redis --redis-url redis://127.0.0.1:6379/0

Each item is "sent" to a simulated external HTTP service that refuses the first
--fail-first calls. Three failures open the circuit; the worker then waits out the
open time instead of spinning, hands every refused or failed item back to its queue,
and finishes once every item went through. Ctrl-C (or SIGTERM) stops it after the
current item; the exit code says why it stopped (0 done, 130 SIGINT, 143 SIGTERM).
"""

from __future__ import annotations

import time
from collections import deque

import click

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_cli import breaker_options, pass_breaker, run_worker

SERVICE = "external-http"


@click.command()
@breaker_options(
    service_policies={SERVICE: ServicePolicy(window_seconds=30, max_failures=3, open_seconds=0.5)},
)
@click.option("--items", default=10, show_default=True, help="How many items to process.")
@click.option("--fail-first", default=4, show_default=True, help="Calls the service refuses at first.")
@click.option("--work-seconds", default=0.0, show_default=True, help="Time each item takes.")
@pass_breaker
def main(breaker: CircuitBreaker, items: int, fail_first: int, work_seconds: float) -> None:
    queue: deque[int] = deque(range(1, items + 1))
    refusals = {"left": fail_first}

    def process_item(item: int) -> None:
        time.sleep(work_seconds)
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise ConnectionError(f"{SERVICE}: connection refused")
        click.echo(f"processed {item}")

    result = run_worker(
        breaker,
        SERVICE,
        source=lambda: queue.popleft() if queue else None,
        process=process_item,
        requeue=queue.append,
        stop_when_empty=True,
    )
    click.echo(
        f"exit={result.exit_code.name} processed={result.processed} failed={result.failed} "
        f"requeued={result.requeued} left={len(queue)}"
    )
    raise SystemExit(int(result.exit_code))


if __name__ == "__main__":
    main()
