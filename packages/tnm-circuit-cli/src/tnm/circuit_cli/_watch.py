"""``tnm-circuit watch``: the status table, redrawn in place on a terminal.

On a terminal the table is redrawn where it stands, with each state in colour (none
when ``NO_COLOR`` is set); piped or redirected, each refresh is printed as plain text
below the last, with no escape codes, so logs and ``grep`` see clean lines. rich does
the terminal work (cursor movement, width, ``NO_COLOR``/``FORCE_COLOR``/``TERM=dumb``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tnm.circuit import CircuitSnapshot

from ._table import HEADERS, render_table, table_rows

__all__ = ["pause", "watch_loop"]

STATE_STYLES = {
    "closed": "green",
    "half_open": "yellow",
    "open": "bold red",
    "forced_open": "bold magenta",
}

Reading = tuple[Sequence[CircuitSnapshot], str | None]
"""The snapshots, and a note about the store when it is unreachable (else ``None``)."""


def _heading(interval: float, count: int, note: str | None) -> str:
    heading = f"{time.strftime('%H:%M:%S')}  every {interval:g}s" + ("" if count else "  (Ctrl-C to stop)")
    return heading if note is None else f"{heading}\n{note}"


def _rich_frame(
    snapshots: Sequence[CircuitSnapshot], interval: float, count: int, note: str | None, empty: str
) -> RenderableType:
    heading = Text(_heading(interval, count, None))
    parts: list[RenderableType] = [heading]
    if note is not None:
        parts.append(Text(note, style="bold yellow"))
    if not snapshots:
        parts.append(Text(empty))
        return Group(*parts)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in HEADERS:
        table.add_column(header, no_wrap=True)
    for row in table_rows(snapshots, time.time()):
        state = row[1]
        table.add_row(row[0], Text(state, style=STATE_STYLES.get(state, "")), *row[2:])
    parts.append(table)
    return Group(*parts)


def pause(seconds: float) -> None:
    """The wait between refreshes (a seam: tests replace it to act between two frames)."""
    time.sleep(seconds)


def watch_loop(
    read: Callable[[], Reading],
    interval: float,
    count: int,
    empty: str,
) -> None:
    """Show ``read()`` every ``interval`` seconds, ``count`` times (0: until Ctrl-C).

    Ctrl-C ends the loop quietly: the caller exits 0, as for a finished ``--count``.
    """
    console = Console()  # stdout; is_terminal is False when piped (or TTY_COMPATIBLE=0)
    shown = 0
    try:
        if console.is_terminal:
            with Live(
                console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
            ) as live:
                while True:
                    snapshots, note = read()
                    live.update(_rich_frame(snapshots, interval, count, note, empty), refresh=True)
                    shown += 1
                    if count and shown >= count:
                        return
                    pause(interval)
        else:
            while True:
                snapshots, note = read()
                if shown:
                    click.echo("")
                click.echo(_heading(interval, count, note))
                click.echo(render_table(snapshots, time.time()) if snapshots else empty)
                shown += 1
                if count and shown >= count:
                    return
                pause(interval)
    except KeyboardInterrupt:
        return
