"""tnm.circuit_cli: Click helpers for workers, and the ``tnm-circuit`` command.

@click.command()
@breaker_options(default_policy=ServicePolicy(max_failures=3))
@pass_breaker
def worker(breaker): ...
"""

from ._cli import cli, main
from ._options import BreakerConfig, breaker_options, pass_breaker
from ._table import render_table
from ._worker import WorkerExit, WorkerResult, run_worker

__all__ = [
    "BreakerConfig",
    "WorkerExit",
    "WorkerResult",
    "breaker_options",
    "cli",
    "main",
    "pass_breaker",
    "render_table",
    "run_worker",
]

# Exported classes and functions report this package (as httpx's do), not the private module.
for _export in (
    BreakerConfig,
    WorkerExit,
    WorkerResult,
    breaker_options,
    main,
    pass_breaker,
    render_table,
    run_worker,
):
    _export.__module__ = __name__
del _export
