"""One run: a fresh fleet of one contender, steady traffic, the outage, the return, the record.

The upstream and the private redis-server live for the whole drill; each run starts its own
fleet of workers (fresh processes, so no breaker remembers an earlier run; a fresh Redis
namespace for the shared ones) and stops it before the next run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from .config import WORKER_TIMEOUT_EXTRA, Drill
from .load import Event, Sample, Target, generate
from .measures import RunRecord
from .processes import Child, Children, DrillError


def start_fleet(
    children: Children, drill: Drill, contender: str, ports: list[int], upstream: str, redis_url: str
) -> list[Child]:
    namespace = f"drill:{contender}:{uuid.uuid4().hex[:8]}"
    options = {
        "--contender": contender,
        "--upstream": f"{upstream}/",
        "--threshold": drill.policy.threshold,
        "--open-seconds": drill.policy.open_seconds,
        "--timeout": drill.stall_hold_seconds + WORKER_TIMEOUT_EXTRA,
        "--redis-url": redis_url,
        "--namespace": namespace,
    }
    args = [str(part) for option in options.items() for part in option]
    fleet = [
        children.start_module(f"worker-{i + 1}-{contender}", "worker", ["--port", str(port), *args], port)
        for i, port in enumerate(ports)
    ]
    children.wait_ready(fleet)
    return fleet


def run_one(
    children: Children,
    drill: Drill,
    scenario: str,
    contender: str,
    ports: list[int],
    upstream: str,
    redis_url: str,
) -> RunRecord:
    """Run ``contender`` through ``scenario`` and return what was recorded."""
    control = httpx.Client(base_url=upstream, timeout=5.0)
    try:
        control.post("/_reset").raise_for_status()
        fleet = start_fleet(children, drill, contender, ports, upstream, redis_url)
        try:
            samples = asyncio.run(_load(drill, scenario, [child.url for child in fleet], upstream))
            run_end = time.monotonic()
            failures: list[float] = []
            for child in fleet:
                failures += child_log(control, f"{child.url}/_log")["failures"]
        finally:
            children.stop(fleet)
        log = child_log(control, "/_log")
    finally:
        control.close()
    switches = log["switches"]
    outage = [t for mode, t in switches if mode == scenario]
    back = [t for mode, t in switches if mode == "ok" and outage and t > outage[0]]
    if not outage or not back:
        raise DrillError(f"the upstream did not record the {scenario} outage ({switches})")
    return RunRecord(
        scenario=scenario,
        contender=contender,
        outage_start=outage[0],
        outage_end=back[0],
        run_end=run_end,
        arrivals=log["arrivals"],
        failure_returns=failures,
        samples=samples,
    )


def child_log(client: httpx.Client, url: str) -> dict[str, Any]:
    response = client.get(url)
    response.raise_for_status()
    record: dict[str, Any] = response.json()
    return record


async def _load(drill: Drill, scenario: str, worker_urls: list[str], upstream: str) -> list[Sample]:
    control = Target.of(upstream)  # the same lean client as the load, so a switch does not stall it
    try:

        async def switch(mode: str) -> None:
            path = f"/_mode?mode={mode}&hold={drill.stall_hold_seconds}"
            status = await asyncio.wait_for(control.get(path, "POST"), 5.0)
            if status != 200:
                raise DrillError(f"the upstream refused to switch to {mode} ({status})")

        events = [
            Event(drill.warmup_seconds, lambda: switch(scenario)),
            Event(drill.warmup_seconds + drill.outage_seconds, lambda: switch("ok")),
        ]
        return await generate(worker_urls, drill.rate, drill.run_seconds, events)
    finally:
        control.close()
