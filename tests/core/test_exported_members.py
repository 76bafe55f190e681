"""The public surface is exactly what we mean to export, read from the modules' namespaces."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import tnm.circuit
import tnm.circuit.exceptions

# Every public module (no leading underscore anywhere in its path) and the names it exports.
PUBLIC_MODULES: dict[str, set[str]] = {
    "tnm.circuit": {
        "__version__",
        "Admitted",
        "Caller",
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
    },
    "tnm.circuit.breaker": {"Admitted", "Caller", "CircuitBreaker", "get_breaker"},
    "tnm.circuit.clock": {"Clock", "SystemClock"},
    "tnm.circuit.events": {"CircuitEvent", "EventKind", "Listener", "ListenerList"},
    "tnm.circuit.http": {
        "DEFAULT_FAILURE_STATUSES",
        "retry_after_seconds",
        "service_namer",
        "status_policy",
        "upstream_name",
    },
    "tnm.circuit.exceptions": {
        "CircuitBackendError",
        "CircuitError",
        "CircuitOpenError",
        "InvalidConfigError",
        "InvalidConfigTypeError",
        "ReturnValuePolicyError",
    },
    "tnm.circuit.policies": {"MODES", "RATE_BUCKETS", "UNSET", "ReturnValuePolicy", "ServicePolicy"},
    "tnm.circuit.state": {"OPENED_BY", "CircuitSnapshot", "CircuitState"},
    "tnm.circuit.testing": {
        "ManualClock",
        "capture_events",
        "fake_redis_breaker",
        "half_open",
        "mirror_state",
        "trip",
    },
    "tnm.circuit.backends": {"Backend", "CircuitHandle", "LocalBackend"},
    "tnm.circuit.backends.base": {"Backend", "CircuitHandle", "Counter", "OutcomeCounts", "RateWindow"},
    "tnm.circuit.backends.local": {"LocalBackend"},
    "tnm.circuit.backends.redis": {"RedisBackend", "redact_url"},
    "tnm.circuit.metrics": {"OUTCOMES", "CircuitStats", "OpenTelemetryMetrics", "PrometheusMetrics"},
    "tnm.circuit.metrics.otel": {"OpenTelemetryMetrics"},
    "tnm.circuit.metrics.prometheus": {"PrometheusMetrics"},
}

# Packages whose namespace holds nothing public but their exports and their public
# submodules (what httpx checks for its root). Everything they import is private.
PACKAGES = ["tnm.circuit", "tnm.circuit.backends", "tnm.circuit.backends.redis", "tnm.circuit.metrics"]

# Names a public module defines without exporting them: the machinery that backends
# and the breaker share, documented as internal. A new public name must be exported
# or added here on purpose.
INTERNAL: dict[str, set[str]] = {
    "tnm.circuit.backends.base": {"log_record_error"},
    "tnm.circuit.backends.local": {"LocalCircuit"},
    "tnm.circuit.state": {
        "CircuitModel",
        "CLOSED",
        "DISABLED",
        "FORCED_OPEN",
        "HALF_OPEN",
        "OPEN",
        "rate_trip_due",
    },
}

# Loaded on first access (each needs its own extra), so absent from the namespace until then.
LAZY = {"tnm.circuit.metrics": {"OpenTelemetryMetrics", "PrometheusMetrics"}}


def _public_modules_found() -> set[str]:
    found = {"tnm.circuit"}
    for info in pkgutil.walk_packages(tnm.circuit.__path__, "tnm.circuit."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.add(info.name)
    return found


def _public(name: str) -> bool:
    return not name.startswith("_") or name == "__version__"


def _submodules(module: types.ModuleType) -> set[str]:
    return {name for name, value in vars(module).items() if isinstance(value, types.ModuleType)}


class TestPublicModules:
    def test_every_public_module_is_listed(self) -> None:
        """Each module without a leading underscore is public API and listed here; the rest are private."""
        assert _public_modules_found() == set(PUBLIC_MODULES)

    @pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
    def test_all_is_exact(self, name: str) -> None:
        """A public module's ``__all__`` names exactly its exports, and each one resolves."""
        module = importlib.import_module(name)
        assert set(module.__all__) == PUBLIC_MODULES[name]
        for export in module.__all__:
            getattr(module, export)

    @pytest.mark.parametrize("name", sorted(set(PUBLIC_MODULES) - set(PACKAGES)))
    def test_module_defines_nothing_public_it_does_not_export(self, name: str) -> None:
        """Every public name a module defines (from ``vars()``) is exported or a documented internal."""
        module = importlib.import_module(name)
        defined = {
            key
            for key, value in vars(module).items()
            if _public(key)
            and not isinstance(value, types.ModuleType)
            and getattr(value, "__module__", None) == name
        }
        internal = INTERNAL.get(name, set())
        assert defined - PUBLIC_MODULES[name] - internal == set()
        assert internal <= defined  # the list of internals stays true


class TestPackageNamespaces:
    @pytest.mark.parametrize("name", PACKAGES)
    def test_nothing_else_leaks_into_a_package(self, name: str) -> None:
        """A package's public names (from ``vars()``) are its exports and public submodules, nothing else."""
        module = importlib.import_module(name)
        public = {key for key in vars(module) if _public(key)}
        submodules = {key for key in _submodules(module) if f"{name}.{key}" in PUBLIC_MODULES}
        expected = (PUBLIC_MODULES[name] - LAZY.get(name, set())) | submodules
        assert public - (LAZY.get(name, set()) & public) == expected

    def test_private_submodules_stay_private(self) -> None:
        """Every submodule found in a package namespace is either a listed public module or underscored."""
        for name in PACKAGES:
            module = importlib.import_module(name)
            for key in _submodules(module):
                assert key.startswith("_") or f"{name}.{key}" in PUBLIC_MODULES, f"{name}.{key}"


class TestExceptionTree:
    def test_exception_tree(self) -> None:
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

    def test_tnm_is_a_namespace_package(self) -> None:
        """`tnm` is a PEP 420 namespace: no __init__ file, so adapters can share it."""
        import tnm

        assert getattr(tnm, "__file__", None) is None


def test_pytest_plugin_exports_its_fixtures() -> None:
    """The pytest plugin's public names are exactly its three fixtures."""
    import tnm.circuit_pytest as plugin

    assert sorted(plugin.__all__) == ["circuit_clock", "circuit_events", "make_breaker"]
    defined = {
        name
        for name, value in vars(plugin).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == plugin.__name__
    }
    assert defined == set(plugin.__all__)


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


class TestPublicNamesReportPublicModules:
    @pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
    def test_exports_report_a_public_module(self, name: str) -> None:
        """Every exported class and function reports a public module path (no underscored part)."""
        module = importlib.import_module(name)
        for export in set(module.__all__) - LAZY.get(name, set()):
            value = getattr(module, export)
            if isinstance(value, (type, types.FunctionType)):
                path = value.__module__
                assert not any(part.startswith("_") for part in path.split(".")), f"{name}.{export}: {path}"

    def test_public_signatures_use_public_types(self) -> None:
        """The protocols a backend implements are typed with exported names only (no internal class)."""
        import typing

        from tnm.circuit.backends import base

        exported = {
            id(getattr(importlib.import_module(m), n))
            for m, names in PUBLIC_MODULES.items()
            for n in names - LAZY.get(m, set())
        }

        def public(hint: object) -> bool:
            parts = typing.get_args(hint)
            if parts:
                return all(public(p) for p in parts)
            return id(hint) in exported or not getattr(hint, "__module__", "").startswith("tnm")

        members = [base.Backend.circuit, *vars(base.CircuitHandle).values()]
        for protocol in (base.Backend, base.CircuitHandle):
            for attribute, hint in typing.get_type_hints(protocol).items():
                assert public(hint), f"{protocol.__name__}.{attribute}: {hint}"
        for member in members:
            function = member.fget if isinstance(member, property) else member
            if callable(function) and hasattr(function, "__code__"):
                for argument, hint in typing.get_type_hints(function).items():
                    assert public(hint), f"{function.__qualname__}({argument}): {hint}"
        listeners = typing.get_type_hints(base.Backend.circuit)["listeners"]
        assert listeners is tnm.circuit.events.ListenerList
        assert "ListenerList" in tnm.circuit.events.__all__
