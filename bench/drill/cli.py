"""The command line: read the options, start the upstream and redis, run every run, report.

Every process started is stopped on the way out, whether the drill ends, fails or is
interrupted (Ctrl-C, SIGTERM): the runs happen inside one ``try`` whose ``finally`` stops them.
Bad input (an unknown scenario or contender, a non-positive number, a busy port) is one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from importlib.util import find_spec
from pathlib import Path
from types import FrameType

from .config import CONTENDERS, DEFAULT, QUICK, SCENARIOS, Drill, Policy
from .measures import RunRecord, summarize
from .processes import Children, DrillError, check_port_free, free_port
from .report import Results, goal_lines, load_average, machine, table, write_json
from .run import run_one


def positive(kind: type[float] | type[int]):
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Drill]:
    parser = argparse.ArgumentParser(
        prog="drill.py",
        description="The outage drill: a real fleet, a dependency that dies, and what each breaker saves.",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (6 s outage, open 2 s)")
    parser.add_argument("--scenario", choices=(*SCENARIOS, "both"), default="both")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated subset of {', '.join(CONTENDERS)} (default: all)",
    )
    parser.add_argument("--workers", type=positive(int), default=4, help="worker processes (default 4)")
    parser.add_argument("--rate", type=positive(float), default=200.0, help="requests/s to the fleet in all")
    parser.add_argument(
        "--outage-seconds", "--duration", dest="outage", type=positive(float), help="outage length"
    )
    parser.add_argument("--open-seconds", type=positive(float), help="how long a circuit stays open")
    parser.add_argument("--threshold", type=positive(int), default=5, help="failures that open a circuit")
    parser.add_argument("--warmup-seconds", type=positive(float), help="healthy traffic before the outage")
    parser.add_argument("--stall-seconds", type=positive(float), default=1.0, help="how long a stall holds")
    parser.add_argument(
        "--port", type=int, default=0,
        help="first port: the upstream on PORT, workers on PORT+1.. (default: free ports)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this path")
    parser.add_argument("--plot", type=Path, help="write the picture (PNG) to this path")
    args = parser.parse_args(argv)
    contenders = tuple(name.strip() for name in args.contenders.split(",") if name.strip())
    unknown = [name for name in contenders if name not in CONTENDERS]
    if unknown or not contenders:
        choices = ", ".join(CONTENDERS)
        parser.error(f"argument --contenders: unknown {unknown or 'empty list'}; choose from {choices}")
    needed = {"circuitbreaker": "circuitbreaker", "pybreaker-redis": "pybreaker"}
    needed = {name: module for name, module in needed.items() if name in contenders}
    if args.plot:
        needed["--plot"] = "matplotlib"
    missing = sorted({f"{what} needs {module}" for what, module in needed.items() if not find_spec(module)})
    if missing:
        parser.error(f"{'; '.join(missing)}: run it with `uv run --group bench python bench/drill.py`")
    if not 0 <= args.port <= 65535 - args.workers:
        parser.error(f"argument --port: {args.port} is not a usable first port for {args.workers} workers")
    base = QUICK if args.quick else DEFAULT
    drill = Drill(
        workers=args.workers,
        rate=args.rate,
        outage_seconds=args.outage or base["outage_seconds"],
        warmup_seconds=args.warmup_seconds or base["warmup_seconds"],
        stall_hold_seconds=args.stall_seconds,
        policy=Policy(args.threshold, args.open_seconds or base["open_seconds"]),
        scenarios=SCENARIOS if args.scenario == "both" else (args.scenario,),
        contenders=tuple(name for name in CONTENDERS if name in contenders),
        port=args.port,
    )
    return args, drill


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the drill like Ctrl-C: through the finally below


def fleet_ports(drill: Drill) -> list[int]:
    """The upstream's port, then one per worker; each checked free before anything starts."""
    if drill.port == 0:
        return [free_port() for _ in range(drill.workers + 1)]
    ports = list(range(drill.port, drill.port + drill.workers + 1))
    for i, port in enumerate(ports):
        check_port_free(port, f"--port {drill.port}: " + ("the upstream" if i == 0 else f"worker {i}"))
    return ports


def run_drill(
    args: argparse.Namespace, drill: Drill, children: Children, redis_url: str, ports: list[int]
) -> int:
    upstream = children.start_module("upstream", "upstream", [str(ports[0])], ports[0])
    children.wait_ready([upstream])
    machine_line, load_at_start = machine(), load_average()
    print(f"machine: {machine_line}, load average {load_at_start}")
    print(
        f"fleet: {drill.workers} workers (FastAPI on uvicorn), {drill.rate:g} requests/s in all; outage "
        f"{drill.outage_seconds:g} s after {drill.warmup_seconds:g} s of healthy traffic, then "
        f"{drill.after_seconds:g} s of recovery; a stall holds each request {drill.stall_hold_seconds:g} s"
    )
    for line in drill.policy.describe():
        print(line)
    sys.stdout.flush()
    records: dict[str, dict[str, RunRecord]] = {}
    for scenario in drill.scenarios:
        for contender in drill.contenders:
            print(f"running {scenario} / {contender} ({drill.run_seconds:g} s) ...", flush=True)
            record = run_one(children, drill, scenario, contender, ports[1:], upstream.url, redis_url)
            records.setdefault(scenario, {})[contender] = record
    results: Results = {
        scenario: {
            name: summarize(record, drill.policy.threshold, drill.policy.open_seconds, drill.hold(scenario))
            for name, record in runs.items()
        }
        for scenario, runs in records.items()
    }
    machine_line = f"{machine_line}, load average {load_at_start} at the start, {load_average()} at the end"
    for scenario, figures in results.items():
        print("\n".join(table(scenario, figures)))
    print("\n".join(goal_lines(drill, results)))
    if args.json:
        write_json(args.json, drill, results, machine_line)
        print(f"\nJSON written to {args.json}")
    if args.plot:
        from .plot import draw

        title = (
            f"{drill.workers} workers, {drill.rate:g} requests/s, open after {drill.policy.threshold} "
            f"failures for {drill.policy.open_seconds:g} s ({os.cpu_count()} CPUs, load average "
            f"{load_at_start.split()[0]} at the start)"
        )
        draw(args.plot, records, title, drill.stall_hold_seconds)
        print(f"picture written to {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args, drill = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    children = Children()
    redis_server = None
    try:
        ports = fleet_ports(drill)
        from tests.redis_server import RedisServer

        try:
            redis_server = RedisServer()
            redis_server.start()
        except RuntimeError as exc:  # not installed, or did not start
            raise DrillError(str(exc)) from None
        return run_drill(args, drill, children, redis_server.url, ports)
    except DrillError as exc:
        print(f"drill.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("drill.py: interrupted; stopping every process it started", file=sys.stderr)
        return 130
    finally:
        children.close()
        if redis_server is not None:
            redis_server.cleanup()
