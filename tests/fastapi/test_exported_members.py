"""tnm.circuit_fastapi's public surface is exactly what we mean to export."""

import tnm.circuit_fastapi


def test_public_names_are_exact() -> None:
    """The module's public names (from vars(), so a leak shows) are exactly __all__ and the intended ones."""
    public = {name for name in vars(tnm.circuit_fastapi) if not name.startswith("_")}
    expected = {
        "STATE_KEY",
        "BreakerDep",
        "add_exception_handlers",
        "breaker_lifespan",
        "circuit_dashboard_router",
        "circuit_status_router",
        "get_circuit_breaker",
        "install",
        "open_error_response",
        "require_available",
    }
    assert public == expected
    assert set(tnm.circuit_fastapi.__all__) == expected


def test_public_members_report_the_package() -> None:
    """Every exported class and function reports tnm.circuit_fastapi, not the private module defining it."""
    import inspect

    module = tnm.circuit_fastapi
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == "tnm.circuit_fastapi", name
