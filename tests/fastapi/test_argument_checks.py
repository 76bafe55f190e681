"""Wiring the breaker into an app refuses a wrong argument at the call, naming it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from tnm.circuit import InvalidConfigError, InvalidConfigTypeError
from tnm.circuit_fastapi import breaker_lifespan, install, require_available


class TestInstall:
    @pytest.mark.parametrize("breaker", [None, "breaker", object()])
    def test_install_refuses_what_is_not_a_breaker(self, breaker: Any) -> None:
        """install(app, X) with X not a CircuitBreaker raises at once, with field "breaker"."""
        app = FastAPI()
        with pytest.raises(InvalidConfigTypeError) as info:
            install(app, breaker)
        assert info.value.field == "breaker"
        assert app.router.lifespan_context is not None  # the app was left as it was
        assert not hasattr(app.state, "tnm_circuit_breaker")

    @pytest.mark.parametrize("breaker", [None, "breaker"])
    def test_lifespan_refuses_what_is_not_a_breaker(self, breaker: Any) -> None:
        """breaker_lifespan(X) with X not a CircuitBreaker raises at once, with field "breaker"."""
        with pytest.raises(InvalidConfigTypeError) as info:
            breaker_lifespan(breaker)
        assert info.value.field == "breaker"


class TestRequireAvailable:
    @pytest.mark.parametrize("service", [42, None, b"search", ["search"]])
    def test_refuses_a_service_that_is_not_a_str(self, service: Any) -> None:
        """require_available(42) raises at the call (not at request time), with field "service"."""
        with pytest.raises(InvalidConfigTypeError) as info:
            require_available(service)
        assert info.value.field == "service"

    def test_refuses_a_blank_name(self) -> None:
        """require_available("  ") raises at the call, with field "service"."""
        with pytest.raises(InvalidConfigError) as info:
            require_available("  ")
        assert info.value.field == "service"
