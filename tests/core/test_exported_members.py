"""The public surface is exactly what we mean to export."""

import tnm.circuit
import tnm.circuit.exceptions
import tnm.circuit.policies


def test_root_exports_are_exact() -> None:
    """Everything in __all__ is importable and nothing private leaks into it."""
    assert sorted(tnm.circuit.__all__) == sorted(
        [
            "CircuitBackendError",
            "CircuitBreaker",
            "CircuitError",
            "CircuitEvent",
            "CircuitOpenError",
            "CircuitSnapshot",
            "CircuitState",
            "Clock",
            "EventKind",
            "InvalidConfigError",
            "InvalidConfigTypeError",
            "Listener",
            "ReturnValuePolicy",
            "ReturnValuePolicyError",
            "ServicePolicy",
            "SystemClock",
            "get_breaker",
        ]
    )
    for name in tnm.circuit.__all__:
        assert getattr(tnm.circuit, name) is not None


def test_exception_tree() -> None:
    """Every error is a CircuitError; config errors are also ValueError / TypeError."""
    exc = tnm.circuit.exceptions
    for cls in (
        exc.CircuitOpenError,
        exc.CircuitBackendError,
        exc.ReturnValuePolicyError,
        exc.InvalidConfigError,
        exc.InvalidConfigTypeError,
    ):
        assert issubclass(cls, exc.CircuitError)
    assert issubclass(exc.InvalidConfigError, ValueError)
    assert issubclass(exc.InvalidConfigTypeError, TypeError)
    assert tnm.circuit.CircuitOpenError is exc.CircuitOpenError


def test_tnm_is_a_namespace_package() -> None:
    """`tnm` is a PEP 420 namespace: no __init__ file, so adapters can share it."""
    import tnm

    assert getattr(tnm, "__file__", None) is None
