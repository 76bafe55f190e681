"""examples/dashboard.py works as its docstring says."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from tnm.circuit.testing import trip

from .test_dashboard import rows

EXAMPLE = Path(__file__).parents[2] / "examples" / "dashboard.py"


def load_example(name: str) -> ModuleType:
    """A fresh copy of the example module (it reads its settings at import)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(
    client: TestClient, done: Callable[[dict[str, str]], bool], auth: tuple[str, str] | None = None
) -> None:
    """Re-read the page's live part until ``done(rows)`` (at most 10 s)."""
    deadline = time.monotonic() + 10
    while not done(rows(client.get("/circuits/live", auth=auth).text)):
        assert time.monotonic() < deadline, "the dashboard did not show the expected states in time"
        time.sleep(0.05)


def test_outage_shows_on_the_read_only_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated traffic fills the page; an outage turns its row open; no operator route by default."""
    monkeypatch.delenv("TNM_DASHBOARD_PASSWORD", raising=False)
    monkeypatch.delenv("TNM_CIRCUIT_REDIS_URL", raising=False)
    example = load_example("dashboard_example_read_only")
    with TestClient(example.app) as client:
        wait_for(client, lambda states: set(states) == {"inventory", "payments", "search"})
        assert (
            client.post("/simulate/outage", params={"service": "payments", "down": True}).status_code == 200
        )
        wait_for(client, lambda states: states["payments"] == "open")
        html = client.get("/circuits/").text
        assert "<button" not in html
        assert client.post("/circuits/reset", params={"service": "payments"}).status_code == 404


def test_password_guards_page_and_adds_buttons(monkeypatch: pytest.MonkeyPatch) -> None:
    """With TNM_DASHBOARD_PASSWORD the page needs the operator's login and offers its buttons."""
    monkeypatch.setenv("TNM_DASHBOARD_PASSWORD", "s3cret")
    monkeypatch.delenv("TNM_CIRCUIT_REDIS_URL", raising=False)
    example = load_example("dashboard_example_operator")
    login = ("operator", "s3cret")
    with TestClient(example.app) as client:
        assert client.get("/circuits/").status_code == 401
        assert client.get("/circuits/", auth=("operator", "wrong")).status_code == 401
        wait_for(client, lambda states: "search" in states, auth=login)
        assert 'action="open?service=search"' in client.get("/circuits/", auth=login).text
        opened = client.post(
            "/circuits/open", params={"service": "search"}, auth=login, follow_redirects=False
        )
        assert opened.status_code == 303
        assert example.breaker.state("search").state.value == "forced_open"


def test_docs_name_every_button(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's docstring and the guide name every button an operator's page renders."""
    import re

    monkeypatch.setenv("TNM_DASHBOARD_PASSWORD", "s3cret")
    monkeypatch.delenv("TNM_CIRCUIT_REDIS_URL", raising=False)
    example = load_example("dashboard_example_buttons")
    login = ("operator", "s3cret")
    with TestClient(example.app) as client:
        wait_for(client, lambda states: "search" in states, auth=login)
        trip(example.breaker, "payments")  # open: its row offers Reset
        html = client.get("/circuits/", auth=login).text
    buttons = sorted(set(re.findall(r"<button[^>]*>([^<]+)</button>", html)))
    assert buttons == ["Apply", "Disable", "Open", "Reset"]
    guide = (EXAMPLE.parents[1] / "docs" / "guide" / "operations.md").read_text()
    for text in (example.__doc__ or "", guide):
        assert "Open, Disable and Reset buttons" in text
        assert "Apply" in text
        assert "Clear override" in text
