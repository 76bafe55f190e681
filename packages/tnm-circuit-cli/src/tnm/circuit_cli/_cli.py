"""The ``tnm-circuit`` command: see and steer circuits (fleet-wide on Redis), and a demo."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import click

from tnm.circuit import CircuitBreaker, CircuitError, CircuitSnapshot, CircuitState, ServicePolicy

from ._demo import run_demo
from ._options import BreakerConfig, breaker_options, pass_breaker
from ._policy import policy
from ._table import render_table
from ._watch import Reading, watch_loop

__all__ = ["cli", "main"]

EXIT_HELP = """\b
Exit status:
  0  done (status: read every circuit)
  1  the backend could not be reached or is misconfigured
     (status --check: also when the store became unreachable while reading)
  2  status --check only: a circuit is not closed (open, half-open, forced open or disabled)
  3  status --check only: nothing known: no breaker ever used this namespace
     (a typo in --namespace?); --allow-empty makes that exit 0
"""


def _version() -> str:
    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:  # pragma: no cover - a source tree that is not installed
            return "unknown"

    return f"{of('tnm-circuit-cli')} (tnm-circuit-core {of('tnm-circuit-core')})"


@click.group(epilog=EXIT_HELP)
@click.version_option(_version(), "--version", prog_name="tnm-circuit", message="%(prog)s %(version)s")
@breaker_options
def cli() -> None:
    """See and steer circuit breakers (tnm-circuit).

    Giving --redis-url (or TNM_CIRCUIT_REDIS_URL) selects the shared Redis backend;
    without one, state lives in this process only. The connection options may be
    given before or after the command: tnm-circuit status --redis-url URL.
    """


def _snapshots(breaker: CircuitBreaker) -> list[CircuitSnapshot]:
    try:
        return breaker.states()
    except CircuitError as exc:
        raise click.ClickException(str(exc)) from None


def _store_note(breaker: CircuitBreaker) -> str | None:
    """A warning when the shared store became unreachable (the states are then this process's own)."""
    if breaker.storage_available:
        return None
    where = breaker.backend.describe()
    return f"warning: circuit store at {where} unreachable: these states are this process's, not the fleet's"


def _empty(breaker: CircuitBreaker, never_used: bool = False) -> str:
    if breaker.backend.name == "local":
        return "no circuits known in this process (the local backend keeps no shared state)"
    if never_used:
        return "no circuits known: no breaker has used this namespace"
    return "no circuits known in this namespace"


def _show(
    snapshots: Sequence[CircuitSnapshot], as_json: bool, breaker: CircuitBreaker, never_used: bool = False
) -> None:
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in snapshots], indent=2))
    elif not snapshots:
        click.echo(_empty(breaker, never_used))
    else:
        click.echo(render_table(snapshots, time.time()))


@cli.command(epilog=EXIT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 2 if any circuit is not closed (open, half-open, forced open or disabled); "
    "exit 1 if the store is unreachable; exit 3 if no breaker ever used this namespace.",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="With --check: exit 0, not 3, when no breaker ever used this namespace.",
)
@breaker_options
@click.pass_context
def status(ctx: click.Context, as_json: bool, check: bool, allow_empty: bool) -> None:
    """Every circuit: state, failures/threshold, retry in, last failure and its age."""
    config = _config(ctx)
    if not _namespace_used(config):
        # Nothing to show, and nothing written: a typo'd namespace stays unused.
        _show([], as_json, config.build(), never_used=True)
        if check and not allow_empty:
            if config.backend == "local":
                why = "the local backend keeps no shared state (pass --redis-url)"
            else:
                where = config.build().backend.describe()
                why = f"no breaker has used namespace {config.namespace!r} at {where} (check --namespace)"
            click.echo(f"nothing known: {why}; --allow-empty accepts an empty namespace", err=True)
            raise SystemExit(3)
        return
    breaker = config.breaker
    snapshots = _snapshots(breaker)
    _show(snapshots, as_json, breaker)
    note = _store_note(breaker)
    if note is not None:
        click.echo(note, err=True)
        if check:
            raise SystemExit(1)
    if check and any(s.state is not CircuitState.CLOSED for s in snapshots):
        not_closed = ", ".join(
            f"{s.service} ({s.state.value})" for s in snapshots if s.state is not CircuitState.CLOSED
        )
        click.echo(f"not closed: {not_closed}", err=True)
        raise SystemExit(2)


def _config(ctx: click.Context) -> BreakerConfig:
    config = BreakerConfig.of(ctx)
    assert config is not None  # every command here has @breaker_options
    return config


def _reader(config: BreakerConfig) -> CircuitBreaker:
    """A breaker to read with that leaves no trace in a namespace no breaker has used (it is
    only initialized, which writes to the store, once the namespace is in use)."""
    return config.breaker if _namespace_used(config) else config.build()


def _namespace_used(config: BreakerConfig) -> bool:
    """Whether any breaker ever used the configured store, read without writing to it."""
    try:
        return config.build().namespace_used()
    except CircuitError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds.")
@click.option(
    "--count", default=0, type=click.IntRange(min=0), help="Refreshes before exiting (0: until Ctrl-C)."
)
@breaker_options
@click.pass_context
def watch(ctx: click.Context, interval: float, count: int) -> None:
    """The status table, refreshed: redrawn in place, in colour, on a terminal.

    Piped or redirected, each refresh is printed as plain text; NO_COLOR turns colour
    off. Ctrl-C stops it (exit 0).
    """
    breaker = _reader(_config(ctx))

    def read() -> Reading:
        snapshots = _snapshots(breaker)
        return snapshots, _store_note(breaker)

    watch_loop(read, interval, count, _empty(breaker))


def _targets(
    breaker: CircuitBreaker, service: str | None, all_: bool, yes: bool, verb: str, *, any_name: bool = False
) -> tuple[list[str], list[str]]:
    """The services to act on, and the names among them that no process has used yet."""
    if breaker.backend.name == "local":
        # Nothing this command changes would outlive it: refuse rather than look done.
        raise click.ClickException(
            f"{verb.lower()} changes nothing on the local backend (its state ends with this "
            "command): pass --redis-url (or set TNM_CIRCUIT_REDIS_URL) to change the circuits "
            "your processes share"
        )
    try:
        known = breaker.services()
    except CircuitError as exc:
        raise click.ClickException(str(exc)) from None
    if all_:
        if service is not None:
            raise click.UsageError("give a SERVICE or --all, not both")
        if not known:
            raise click.ClickException("no circuits known")
        if not yes:
            click.confirm(f"{verb} {len(known)} circuits ({', '.join(known)})?", abort=True, err=True)
        return known, []
    if service is None:
        raise click.UsageError("give a SERVICE (or --all)")
    if service in known:
        return [service], []
    if not any_name:
        hint = f" (known: {', '.join(known)})" if known else ""
        raise click.ClickException(f"unknown service {service!r}{hint}")
    # An operator may take any service out, used yet or not (maintenance, failover).
    return [service], [service]


def _apply(breaker: CircuitBreaker, targets: list[str], act: str, reason: str | None) -> None:
    for target in targets:
        try:
            if act == "open":
                breaker.force_open(target, reason)
            elif act == "disable":
                breaker.disable(target, reason)
            else:
                breaker.reset(target)
        except CircuitError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{target}: {breaker.state(target).state.value}")


_SERVICE = click.argument("service", required=False)
_ALL = click.option("--all", "all_", is_flag=True, help="Every known circuit (asks first).")
_YES = click.option("--yes", is_flag=True, help="Do not ask for confirmation with --all.")


@cli.command(name="open")
@_SERVICE
@_ALL
@_YES
@click.option(
    "--reason", default="held open by an operator", show_default=True, help="Shown as the last failure."
)
@breaker_options
@pass_breaker
def open_(breaker: CircuitBreaker, service: str | None, all_: bool, yes: bool, reason: str) -> None:
    """Hold SERVICE's circuit open (every call rejected) until close or reset.

    Any service name may be opened, even one no process has used yet.
    """
    targets, unused = _targets(breaker, service, all_, yes, "Force open", any_name=True)
    _apply(breaker, targets, "open", reason)
    for name in unused:
        click.echo(f"note: no process has used {name!r} here yet; it is held open for them anyway", err=True)


@cli.command()
@_SERVICE
@_ALL
@_YES
@click.option(
    "--reason", default="disabled by an operator", show_default=True, help="Shown as the last failure."
)
@breaker_options
@pass_breaker
def disable(breaker: CircuitBreaker, service: str | None, all_: bool, yes: bool, reason: str) -> None:
    """Let every call to SERVICE through and record nothing, until close or reset.

    For a dependency known to be flaky when rejecting calls would hurt more. Any
    service name may be disabled, even one no process has used yet.
    """
    targets, unused = _targets(breaker, service, all_, yes, "Disable", any_name=True)
    _apply(breaker, targets, "disable", reason)
    for name in unused:
        click.echo(f"note: no process has used {name!r} here yet; it is disabled for them anyway", err=True)


@cli.command()
@_SERVICE
@_ALL
@_YES
@breaker_options
@click.pass_context
def close(ctx: click.Context, service: str | None, all_: bool, yes: bool) -> None:
    """Close SERVICE's circuit (ends a forced open or a disable; same as reset)."""
    breaker = _reader(_config(ctx))
    _apply(breaker, _targets(breaker, service, all_, yes, "Close")[0], "close", None)


@cli.command()
@_SERVICE
@_ALL
@_YES
@breaker_options
@click.pass_context
def reset(ctx: click.Context, service: str | None, all_: bool, yes: bool) -> None:
    """Close SERVICE's circuit and clear its failure count."""
    breaker = _reader(_config(ctx))
    _apply(breaker, _targets(breaker, service, all_, yes, "Reset")[0], "reset", None)


@cli.command()
@breaker_options
@click.pass_context
def demo(ctx: click.Context) -> None:
    """A flaky dependency driven through closed -> open -> half-open -> closed (a few seconds).

    Runs on the local backend by default; with --redis-url it uses shared state.
    """
    config = _config(ctx)
    # The demo prints each transition itself; keep the breaker's own log lines quiet.
    logging.getLogger("tnm.circuit").setLevel(logging.ERROR)

    def factory(policy: ServicePolicy) -> CircuitBreaker:
        config.default_policy = policy
        return config.breaker

    ctx.exit(run_demo(factory, click.echo))


cli.add_command(policy)


def main() -> None:
    """Entry point of the ``tnm-circuit`` script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cli(prog_name="tnm-circuit")
