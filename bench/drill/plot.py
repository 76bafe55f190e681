"""The picture: what reached the dead upstream (error scenario) and what callers waited (stall).

Top: requests per second reaching the upstream, one line per contender, the outage shaded
(a symmetric-log axis, so 1 request in a bin and 200 per second both show). Bottom: the app's
callers' p99 latency per bin of send time (log axis), the outage shaded. Time is counted from
the outage's start in both.
"""

from __future__ import annotations

from pathlib import Path

from .config import CONTENDERS
from .measures import RunRecord, p99_series, rate_series

COLORS = {
    "none": "#7f7f7f",
    "circuitbreaker": "#ff7f0e",
    "pybreaker-redis": "#9467bd",
    "tnm-local": "#2ca02c",
    "tnm-redis": "#d62728",
}
STYLES = {"none": ":", "circuitbreaker": "--", "tnm-local": "--", "pybreaker-redis": "-", "tnm-redis": "-"}
"""Dashed: each process decides alone; solid: the fleet shares one view; dotted: no breaker."""
BIN_SECONDS = 0.5


def draw(path: Path, records: dict[str, dict[str, RunRecord]], title: str, hold: float) -> None:
    """Write the PNG to ``path`` (``records``: scenario -> contender -> run record)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [s for s in ("error", "stall") if s in records]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 0.4 + 3.6 * len(panels)), squeeze=False)
    for ax, scenario in zip((row[0] for row in axes), panels, strict=True):
        runs = records[scenario]
        first = next(iter(runs.values()))
        ax.axvspan(0, first.outage_end - first.outage_start, color="#f2c6c6", alpha=0.5, label="outage")
        for name in CONTENDERS:
            if name not in runs:
                continue
            if scenario == "error":
                xs, ys = rate_series(runs[name], BIN_SECONDS)
            else:
                xs, ys = p99_series(runs[name], BIN_SECONDS)
            width = 2.4 if name == "tnm-redis" else 1.4
            ax.plot(
                xs,
                ys,
                label=name,
                color=COLORS[name],
                linestyle=STYLES[name],
                linewidth=width,
                drawstyle="steps-mid",
            )
        ax.set_xlabel("seconds from the upstream's failure")
        if scenario == "error":
            ax.set_yscale("symlog", linthresh=2)
            ax.set_ylabel("requests/s reaching the upstream")
            ax.set_title("error scenario: the upstream answers 503 at once")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("callers' p99 latency (ms)")
            ax.set_title(f"stall scenario: the upstream holds each request {hold:g} s, then answers 503")
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small", frameon=False)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)
