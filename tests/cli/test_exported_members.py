"""tnm.circuit_cli's public surface is exactly what we mean to export."""

from __future__ import annotations

import tnm.circuit_cli

EXPECTED = {
    "BreakerConfig",
    "WorkerExit",
    "WorkerResult",
    "breaker_options",
    "cli",
    "main",
    "pass_breaker",
    "render_table",
    "run_worker",
}


def test_exported_members_are_exact() -> None:
    """``__all__`` and the module's public names (from ``vars()``, so a leak shows) are the intended ones."""
    public = {name for name in vars(tnm.circuit_cli) if not name.startswith("_")}
    assert set(tnm.circuit_cli.__all__) == EXPECTED
    assert public == EXPECTED


def test_public_members_report_the_package() -> None:
    """Every exported class and function reports tnm.circuit_cli, not the private module defining it."""
    import inspect

    module = tnm.circuit_cli
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == "tnm.circuit_cli", name
