"""HTML for the dashboard: the whole page, and the live part that the page's script swaps in.

One renderer serves both: with JavaScript off the browser reloads the whole page; with
it on the script fetches the live part. Every string from a circuit (service names,
reasons) is escaped here, so the script can insert the fragment as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from urllib.parse import quote

from tnm.circuit import CircuitSnapshot, ServicePolicy

from .history import STORE, Change
from .policy_form import policy_cell

__all__ = ["Settings", "View", "render_live", "render_page"]

STATE_TEXT = {
    "closed": "closed",
    "open": "open",
    "half_open": "half-open",
    "forced_open": "forced open",
    "disabled": "disabled",
}


@dataclass(frozen=True)
class Settings:
    """What the user chose when building the router."""

    title: str
    refresh_seconds: float
    noscript_refresh_seconds: int
    expose_reasons: bool
    operator: bool


@dataclass(frozen=True)
class View:
    """Everything one rendering shows, read at ``now`` (epoch seconds)."""

    snapshots: list[CircuitSnapshot]
    backend: str
    store_ok: bool
    history: list[Change]
    now: float
    policies: dict[str, tuple[ServicePolicy, str]] = field(default_factory=dict)
    """service -> (the policy in force in this process, its source: code, process or fleet)."""


def _time(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return f'<time datetime="{moment.isoformat()}">{moment:%Y-%m-%d %H:%M:%S} UTC</time>'


def _ago(ts: float, now: float) -> str:
    seconds = max(0.0, now - ts)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{math.ceil(value)} s"


def _state(state: str) -> str:
    css = escape(state.replace("_", "-"))
    return f'<span class="badge {css}">{escape(STATE_TEXT.get(state, state))}</span>'


def _opened_by(s: CircuitSnapshot) -> str:
    """Why an open or half-open circuit opened (the figures shown beside are the ones that did)."""
    if s.opened_by is None:
        return ""
    return f' <span class="opened-by">by {escape(s.opened_by.replace("_", " "))}</span>'


def _failures(s: CircuitSnapshot) -> str:
    window = f"{s.window_seconds:g}"
    if s.max_failures is None:  # rate triggers only: no count threshold to draw
        rate = "" if s.failure_rate is None else f" ({s.failure_rate:.0%} of {s.calls} calls)"
        return f'<span class="count">{s.failures}</span>{rate} in {escape(window)} s'
    shown = min(s.failures, s.max_failures)
    # Green below threshold - 1, amber one failure short of opening, red at the threshold.
    low, high = max(s.max_failures - 1.5, 0), max(s.max_failures - 0.5, 0)
    return (
        f'<meter min="0" max="{s.max_failures}" low="{low:g}" high="{high:g}" '
        f'optimum="0" value="{shown}"></meter> '
        f'<span class="count">{s.failures} / {s.max_failures}</span> in {escape(window)} s'
    )


def _failing_processes(s: CircuitSnapshot) -> str:
    """How many processes failed inside the window (Redis backend), once one has."""
    if not s.failing_processes:
        return ""
    return f' <span class="failing-processes">failing processes: {s.failing_processes}</span>'


def _retry(s: CircuitSnapshot) -> str:
    state = s.state.value
    if state == "forced_open":
        return "held open by an operator"
    if state == "open":
        return f"trial in {_seconds(s.retry_after or 0.0)}"
    if state == "half_open":
        if s.retry_after:
            return f"trial running; next permit in {_seconds(s.retry_after)}"
        return "trial calls allowed"
    return "&mdash;"


def _last_failure(s: CircuitSnapshot, now: float, settings: Settings) -> str:
    last = s.last_failure
    if not last:
        return "&mdash;"
    ts = float(last["ts"])
    text = f'{_time(ts)} <span class="ago">({_ago(ts, now)})</span>'
    if settings.expose_reasons and last.get("reason"):
        text += f'<br><span class="reason">{escape(str(last["reason"]))}</span>'
    return text


def _actions(s: CircuitSnapshot) -> str:
    service = quote(s.service, safe="")
    name = escape(s.service)
    forms = []
    if s.state.value != "forced_open":
        forms.append(
            f'<form method="post" action="open?service={service}" '
            f'data-confirm="Open {name} for every process until it is reset?">'
            f'<button type="submit" class="danger">Open</button></form>'
        )
    if s.state.value != "disabled":
        forms.append(
            f'<form method="post" action="disable?service={service}" '
            f'data-confirm="Disable {name} for every process (every call passes, nothing is counted) '
            f'until it is reset?"><button type="submit">Disable</button></form>'
        )
    if s.state.value != "closed" or s.failures:
        forms.append(
            f'<form method="post" action="reset?service={service}" '
            f'data-confirm="Close {name} and clear its failures?">'
            f'<button type="submit">Reset</button></form>'
        )
    return "".join(forms) or "&mdash;"


def _row(s: CircuitSnapshot, view: View, settings: Settings) -> str:
    state, now = s.state.value, view.now
    in_force = view.policies.get(s.service)
    policy = "&mdash;" if in_force is None else policy_cell(s.service, *in_force, settings.operator)
    cells = [
        f'<th scope="row" class="service">{escape(s.service)}</th>',
        f'<td class="state">{_state(state)}{_opened_by(s)}</td>',
        f'<td class="failures">{_failures(s)}{_failing_processes(s)}</td>',
        f'<td class="policy">{policy}</td>',
        f'<td class="retry">{_retry(s)}</td>',
        f'<td class="last-failure">{_last_failure(s, now, settings)}</td>',
    ]
    if settings.operator:
        cells.append(f'<td class="actions">{_actions(s)}</td>')
    css = escape(state.replace("_", "-"))
    attributes = f'class="row-{css}" data-service="{escape(s.service)}" data-state="{css}"'
    return f"<tr {attributes}>{''.join(cells)}</tr>"


def _table(view: View, settings: Settings) -> str:
    if not view.snapshots:
        return (
            '<p class="empty">No circuits yet: a circuit appears once the app calls its service '
            "(or, with a shared store, once any process does).</p>"
        )
    head = ["Service", "State", "Failures in window", "Policy", "Retry", "Last failure"]
    if settings.operator:
        head.append("Operator")
    header = "".join(f'<th scope="col">{h}</th>' for h in head)
    rows = "".join(_row(s, view, settings) for s in view.snapshots)
    return f'<table class="circuits"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>'


def _store(view: View) -> str:
    backend = escape(view.backend)
    if view.backend == "local":
        return '<p class="store ok">Store: in this process (local backend)</p>'
    if view.store_ok:
        return f'<p class="store ok">Store: {backend}, reachable (state shared by every process)</p>'
    return (
        f'<p class="store degraded">Store: {backend}, <strong>unreachable</strong>: '
        "each process decides on its own until it is back</p>"
    )


def _change(change: Change, settings: Settings) -> str:
    when = _time(change.ts)
    if change.service == STORE:
        what = "store reachable again" if change.state == "ok" else "store unreachable"
        return f'<li class="store-change">{when} {escape(what)}</li>'
    previous = _state(change.previous) if change.previous else ""
    service = f'<span class="service">{escape(change.service)}</span>'
    text = f"{when} {service} {previous} &rarr; {_state(change.state)}"
    if change.seen:
        text += ' <span class="seen">(noticed when the page read it)</span>'
    if settings.expose_reasons and change.reason:
        text += f' <span class="reason">{escape(change.reason)}</span>'
    return f"<li>{text}</li>"


def _history(view: View, settings: Settings) -> str:
    if not view.history:
        items = '<li class="empty">No state change recorded yet.</li>'
    else:
        items = "".join(_change(c, settings) for c in view.history)
    return f'<section class="history"><h2>Recent state changes</h2><ol>{items}</ol></section>'


def render_live(view: View, settings: Settings) -> str:
    """The part of the page that changes: store health, the circuits and the history."""
    return (
        f"{_store(view)}{_table(view, settings)}{_history(view, settings)}"
        f'<p class="updated">Read at {_time(view.now)}</p>'
    )


def render_page(view: View, settings: Settings) -> str:
    """The whole page; it reloads itself every ``noscript_refresh_seconds`` when scripts are off."""
    title = escape(settings.title)
    refresh_ms = max(1, round(settings.refresh_seconds * 1000))
    every = settings.noscript_refresh_seconds
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<noscript><meta http-equiv="refresh" content="{every}"></noscript>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/dashboard.css">
<script src="assets/dashboard.js" defer></script>
</head>
<body>
<header>
<h1>{title}</h1>
<p id="live-status" class="live-status">
<noscript>Scripts are off: this page reloads every {every} s.</noscript>
</p>
</header>
<main id="live" data-refresh-ms="{refresh_ms}">{render_live(view, settings)}</main>
</body>
</html>
"""
