"""A circuit's policy on the dashboard: the thresholds in force and their source, the operator's
edit form (plain HTML: it works without JavaScript), and reading that form back."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qs, quote

from tnm.circuit import InvalidConfigError, InvalidConfigTypeError, ServicePolicy

__all__ = ["FIELDS", "parse_form", "policy_cell"]

FIELDS: tuple[tuple[str, str, type], ...] = (
    ("max_failures", "Max failures", int),
    ("window_seconds", "Window (s)", float),
    ("open_seconds", "Open (s)", float),
    ("failure_rate_threshold", "Failure rate (0-1)", float),
    ("minimum_calls", "Minimum calls", int),
    ("slow_call_seconds", "Slow call (s)", float),
    ("slow_call_rate_threshold", "Slow-call rate (0-1)", float),
    ("half_open_max_calls", "Trial calls", int),
    ("success_threshold", "Trial successes", int),
    ("trial_timeout_seconds", "Trial timeout (s)", float),
    ("backoff_multiplier", "Backoff multiplier", float),
    ("max_open_seconds", "Max open (s)", float),
    ("min_failing_processes", "Failing processes to open (Redis)", int),
    ("mode", "Mode", str),
)
"""The fields the form edits: every field a run-time override may set (``set_policy``)."""

SOURCE_TEXT = {
    "code": "from code",
    "process": "changed in this process",
    "fleet": "changed for the fleet",
}


def _num(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _summary(policy: ServicePolicy) -> str:
    parts = []
    if policy.max_failures is not None:
        parts.append(f"{policy.max_failures} failures / {_num(policy.window_seconds)} s")
    if policy.failure_rate_threshold is not None:
        parts.append(f"failure rate {policy.failure_rate_threshold:.0%} of {policy.minimum_calls}+ calls")
    if policy.slow_call_rate_threshold is not None:
        parts.append(f"slow &gt; {_num(policy.slow_call_seconds)} s at {policy.slow_call_rate_threshold:.0%}")
    parts.append(f"open {_num(policy.open_seconds)} s")
    if policy.mode != "enforce":
        parts.append(escape(policy.mode))
    return " &middot; ".join(parts)


def _input(name: str, label: str, kind: type, policy: ServicePolicy, service: str) -> str:
    field_id = f"{escape(quote(service, safe=''))}-{name}"
    if kind is str:
        options = "".join(
            f'<option value="{m}"{" selected" if policy.mode == m else ""}>{m}</option>'
            for m in ("enforce", "observe")
        )
        control = f'<select id="{field_id}" name="{name}">{options}</select>'
    else:
        step = "1" if kind is int else "any"
        value = _num(getattr(policy, name))
        control = f'<input id="{field_id}" name="{name}" type="number" step="{step}" min="0" value="{value}">'
    return f'<label for="{field_id}">{escape(label)}</label>{control}'


def policy_cell(service: str, policy: ServicePolicy, source: str, operator: bool) -> str:
    """The thresholds in force and where they come from; for an operator, the edit form and,
    when an override is in force, a button that clears it."""
    text = (
        f'<span class="thresholds">{_summary(policy)}</span> '
        f'<span class="source source-{escape(source)}">{escape(SOURCE_TEXT.get(source, source))}</span>'
    )
    if not operator:
        return text
    target = quote(service, safe="")
    name = escape(service)
    inputs = "".join(_input(n, label, kind, policy, service) for n, label, kind in FIELDS)
    text += (
        f'<details class="policy-edit"><summary>Edit policy</summary>'
        f'<form method="post" action="policy?service={target}" class="policy-form" '
        f'data-confirm="Change the policy of {name}?">{inputs}'
        f'<button type="submit">Apply</button></form></details>'
    )
    if source != "code":
        text += (
            f'<form method="post" action="clear-policy?service={target}" '
            f'data-confirm="Clear the policy override of {name}?">'
            f'<button type="submit">Clear override</button></form>'
        )
    return text


def parse_form(body: bytes, current: ServicePolicy) -> dict[str, Any]:
    """The fields the form changed (differing from ``current``), each converted to its type;
    ``InvalidConfigError`` naming a field whose text is not a number. Empty fields are left out."""
    sent = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=False)
    changed: dict[str, Any] = {}
    for name, _, kind in FIELDS:
        values = sent.get(name)
        if not values:
            continue
        text = values[-1].strip()
        if kind is str:
            value: Any = text
        else:
            try:
                value = int(text) if kind is int else float(text)
            except ValueError:
                raise InvalidConfigTypeError(name, f"must be a number, got {text!r}") from None
        if value != getattr(current, name):
            changed[name] = value
    for name in sent:
        if name not in {n for n, _, _ in FIELDS}:
            raise InvalidConfigError(name, "is not a field the dashboard changes")
    return changed
