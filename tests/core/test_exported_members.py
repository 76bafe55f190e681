"""The public surface is exactly what we mean to export."""

import types

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
            "__version__",
            "get_breaker",
        ]
    )
    for name in tnm.circuit.__all__:
        assert getattr(tnm.circuit, name) is not None


def test_nothing_else_leaks_into_the_root() -> None:
    """Every public name in the package namespace (submodules aside) is in __all__, as httpx checks."""
    public = {
        name
        for name, value in vars(tnm.circuit).items()
        if (not name.startswith("_") or name == "__version__") and not isinstance(value, types.ModuleType)
    }
    assert public == set(tnm.circuit.__all__)


def test_states_and_event_kinds() -> None:
    """The states and event kinds users match on, by value (disabled and would_reject included)."""
    assert [s.value for s in tnm.circuit.CircuitState] == [
        "closed",
        "open",
        "half_open",
        "forced_open",
        "disabled",
    ]
    assert tnm.circuit.EventKind("would_reject") is tnm.circuit.EventKind.WOULD_REJECT
    assert tnm.circuit.policies.MODES == ("enforce", "observe")
    assert set(tnm.circuit.policies.__all__) == {
        "MODES",
        "RATE_BUCKETS",
        "UNSET",
        "ReturnValuePolicy",
        "ServicePolicy",
    }


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
