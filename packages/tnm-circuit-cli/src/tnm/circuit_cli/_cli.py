"""The ``tnm-circuit`` command: see and steer circuits (fleet-wide on Redis), and a demo."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import click

from tnm.circuit import CircuitBreaker, CircuitError, CircuitSnapshot, CircuitState, ServicePolicy

from ._demo import run_demo
from ._options import BreakerConfig, breaker_options, pass_breaker
from ._table import render_table

__all__ = ["cli", "main"]


@click.group()
@breaker_options
def cli() -> None:
    """See and steer circuit breakers (tnm-circuit)."""


def _snapshots(breaker: CircuitBreaker) -> list[CircuitSnapshot]:
    try:
        return breaker.states()
    except CircuitError as exc:
        raise click.ClickException(str(exc)) from None


def _show(snapshots: Sequence[CircuitSnapshot], as_json: bool, breaker: CircuitBreaker) -> None:
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in snapshots], indent=2))
    elif not snapshots:
        where = (
            "this process (the local backend keeps no shared state)"
            if breaker.backend.name == "local"
            else "this namespace"
        )
        click.echo(f"no circuits known in {where}")
    else:
        click.echo(render_table(snapshots, time.time()))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--check", is_flag=True, help="Exit with status 2 if any circuit is open.")
@pass_breaker
def status(breaker: CircuitBreaker, as_json: bool, check: bool) -> None:
    """Every circuit: state, failures/threshold, retry in, last failure and its age."""
    snapshots = _snapshots(breaker)
    _show(snapshots, as_json, breaker)
    if check and any(s.state is not CircuitState.CLOSED for s in snapshots):
        open_ones = ", ".join(s.service for s in snapshots if s.state is not CircuitState.CLOSED)
        click.echo(f"not closed: {open_ones}", err=True)
        raise SystemExit(2)


@cli.command()
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds.")
@click.option("--count", default=0, type=click.IntRange(min=0), help="Refreshes before exiting (0: forever).")
@pass_breaker
def watch(breaker: CircuitBreaker, interval: float, count: int) -> None:
    """The status table, refreshed."""
    shown = 0
    while True:
        click.clear() if shown and count == 0 else None
        click.echo(f"{time.strftime('%H:%M:%S')}  every {interval:g}s")
        _show(_snapshots(breaker), False, breaker)
        shown += 1
        if count and shown >= count:
            return
        time.sleep(interval)


def _targets(breaker: CircuitBreaker, service: str | None, all_: bool, yes: bool, verb: str) -> list[str]:
    known = [s.service for s in _snapshots(breaker)]
    if all_:
        if service is not None:
            raise click.UsageError("give a SERVICE or --all, not both")
        if not known:
            raise click.ClickException("no circuits known")
        if not yes:
            click.confirm(f"{verb} {len(known)} circuits ({', '.join(known)})?", abort=True, err=True)
        return known
    if service is None:
        raise click.UsageError("give a SERVICE (or --all)")
    if service not in known:
        hint = f" (known: {', '.join(known)})" if known else ""
        raise click.ClickException(f"unknown service {service!r}{hint}")
    return [service]


def _control_command(name: str, verb: str, help_text: str) -> None:
    @cli.command(name=name, help=help_text)
    @click.argument("service", required=False)
    @click.option("--all", "all_", is_flag=True, help="Every known circuit (asks first).")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation with --all.")
    @click.option("--reason", default="held open by an operator", show_default=True, help="With open.")
    @pass_breaker
    def command(breaker: CircuitBreaker, service: str | None, all_: bool, yes: bool, reason: str) -> None:
        for target in _targets(breaker, service, all_, yes, verb):
            try:
                if name == "open":
                    breaker.force_open(target, reason)
                else:
                    breaker.reset(target)
            except CircuitError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"{target}: {breaker.state(target).state.value}")


_control_command("open", "Force open", "Hold SERVICE's circuit open (every call rejected) until reset.")
_control_command("close", "Close", "Close SERVICE's circuit (ends a forced open; same as reset).")
_control_command("reset", "Reset", "Close SERVICE's circuit and clear its failure count.")


@cli.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """A flaky dependency driven through closed -> open -> half-open -> closed (a few seconds).

    Runs on the local backend by default; with --backend redis it uses shared state.
    """
    config = ctx.find_object(BreakerConfig)
    assert config is not None
    # The demo prints each transition itself; keep the breaker's own log lines quiet.
    logging.getLogger("tnm.circuit").setLevel(logging.ERROR)

    def factory(policy: ServicePolicy) -> CircuitBreaker:
        config.default_policy = policy
        return config.breaker

    ctx.exit(run_demo(factory, click.echo))


def main() -> None:
    """Entry point of the ``tnm-circuit`` script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cli(prog_name="tnm-circuit")
