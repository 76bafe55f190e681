"""tnm.circuit_celery's public surface is exactly what we mean to export."""

from __future__ import annotations

import tnm.circuit_celery

EXPECTED = {"APP_ATTRIBUTE", "CircuitBreakerTask", "setup"}


def test_exported_members_are_exact() -> None:
    """``__all__`` and the module's public names (from ``vars()``, so a leak shows) are the intended ones."""
    public = {name for name in vars(tnm.circuit_celery) if not name.startswith("_")}
    assert set(tnm.circuit_celery.__all__) == EXPECTED
    assert public == EXPECTED


def test_public_members_report_the_package() -> None:
    """Every exported class and function reports tnm.circuit_celery, not the private module defining it."""
    import inspect

    module = tnm.circuit_celery
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == "tnm.circuit_celery", name
