"""``tnm-circuit policy``: see and change services' policies fleet-wide (Redis only)."""

from __future__ import annotations

import json
from typing import Any

import click

from tnm.circuit import CircuitBreaker, CircuitError, InvalidConfigError

from ._options import BreakerConfig, breaker_options

__all__ = ["policy"]

# Every ServicePolicy field that makes sense on a command line: (option, field, type, help).
_FIELDS: tuple[tuple[str, str, Any, str], ...] = (
    ("--max-failures", "max_failures", int, "Failures in the window that open the circuit."),
    ("--window-seconds", "window_seconds", float, "Length of the sliding window."),
    ("--open-seconds", "open_seconds", float, "How long the circuit stays open before a trial."),
    ("--max-open-seconds", "max_open_seconds", float, "Cap of the open time under backoff."),
    ("--half-open-max-calls", "half_open_max_calls", int, "Trial calls let through at once."),
    ("--success-threshold", "success_threshold", int, "Trial successes that close the circuit."),
    ("--backoff-multiplier", "backoff_multiplier", float, "Open time growth per failed trial (>= 1)."),
    ("--trial-timeout-seconds", "trial_timeout_seconds", float, "When an unfinished trial loses its permit."),
    (
        "--failure-rate-threshold",
        "failure_rate_threshold",
        float,
        "Share of failed calls that opens, in (0, 1].",
    ),
    ("--minimum-calls", "minimum_calls", int, "Calls in the window before a rate decides."),
    ("--slow-call-seconds", "slow_call_seconds", float, "Calls longer than this are slow."),
    ("--slow-call-rate-threshold", "slow_call_rate_threshold", float, "Share of slow calls that opens."),
    (
        "--min-failing-processes",
        "min_failing_processes",
        int,
        "Processes that must fail before the fleet's circuit opens (Redis).",
    ),
    (
        "--mode",
        "mode",
        click.Choice(["enforce", "observe"]),
        "enforce: reject while open; observe: only watch.",
    ),
)
_OPTION_OF = {field: option for option, field, _, _ in _FIELDS}


def _fleet_breaker(ctx: click.Context) -> CircuitBreaker:
    config = BreakerConfig.of(ctx)
    assert config is not None
    if config.backend == "local":
        raise click.ClickException(
            "policy changes need the shared Redis backend: a process's own policy cannot be "
            "changed from outside it (call breaker.set_policy in that process, or pass "
            "--redis-url / set TNM_CIRCUIT_REDIS_URL to change the policy of every process)"
        )
    return config.breaker


@click.group()
@breaker_options
def policy() -> None:
    """See and change services' policies for every process (Redis backend).

    A change is stored in Redis as the fields given; each process merges them over the
    policy its code gave and applies the result within its refresh interval.
    """


@policy.command(name="show")
@click.argument("service", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@breaker_options
@click.pass_context
def show(ctx: click.Context, service: str | None, as_json: bool) -> None:
    """Each service's fleet override (if any) and where its policy comes from.

    source "fleet": an override stored here applies to every process; "code": each
    process uses the policy its code gave (or its own set_policy).
    """
    breaker = _fleet_breaker(ctx)
    try:
        overrides = breaker.policy_overrides()
        names = [service] if service is not None else sorted(set(breaker.services()) | set(overrides))
        rows: list[dict[str, Any]] = []
        for name in names:
            snap = breaker.state(name) if name in breaker.services() else None
            rows.append(
                {
                    "service": name,
                    "source": "fleet" if name in overrides else "code",
                    "override": overrides.get(name, {}),
                    "max_failures": None if snap is None else snap.max_failures,
                    "window_seconds": None if snap is None else snap.window_seconds,
                }
            )
    except CircuitError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no services known in this namespace")
        return
    for row in rows:
        fields = ", ".join(f"{k}={v}" for k, v in row["override"].items()) or "-"
        shown = ""
        if row["max_failures"] is not None or row["window_seconds"] is not None:
            shown = (
                f"  (in use: max_failures={row['max_failures']}, window_seconds={row['window_seconds']:g})"
            )
        click.echo(f"{row['service']}: source={row['source']}  override: {fields}{shown}")


def _set_options(command: Any) -> Any:
    for option, field, kind, help_ in reversed(_FIELDS):
        command = click.option(option, field, type=kind, default=None, help=help_)(command)
    return command


@policy.command(name="set")
@click.argument("service")
@_set_options
@breaker_options
@click.pass_context
def set_(ctx: click.Context, /, service: str, **fields: Any) -> None:
    """Store an override of SERVICE's policy for every process: only the fields given change.

    Each value is checked as ServicePolicy checks it; an invalid one is refused naming its
    option, and nothing is stored.
    """
    patch = {name: value for name, value in fields.items() if value is not None}
    if not patch:
        raise click.UsageError("give at least one field to change (see --help)")
    breaker = _fleet_breaker(ctx)
    try:
        # Stored for the fleet without applying it to this command's own breaker, whose policy
        # (the default) is no process's: a refusal here would say nothing about the fleet.
        breaker.backend.policy_overrides.store(service, patch)  # type: ignore[attr-defined]
    except InvalidConfigError as exc:
        option = _OPTION_OF.get(exc.field, exc.field)
        raise click.ClickException(f"{option}: {exc.message}") from None
    except CircuitError as exc:
        raise click.ClickException(str(exc)) from None
    shown = ", ".join(f"{name}={value}" for name, value in patch.items())
    click.echo(
        f"{service}: fleet override stored ({shown}); processes apply it within their refresh interval"
    )


@policy.command(name="clear")
@click.argument("service")
@breaker_options
@click.pass_context
def clear(ctx: click.Context, service: str) -> None:
    """Drop SERVICE's fleet override: every process goes back to its own policy."""
    breaker = _fleet_breaker(ctx)
    try:
        breaker.backend.policy_overrides.clear(service)  # type: ignore[attr-defined]
    except InvalidConfigError as exc:
        raise click.ClickException(f"{exc.field}: {exc.message}") from None
    except CircuitError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{service}: fleet override cleared")
