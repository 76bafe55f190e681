"""The API reference renders the public API only: exported, documented names."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs" / "reference").glob("*.md"))
DIRECTIVE = re.compile(r"^::: (\S+)", re.MULTILINE)


def _resolve(path: str) -> tuple[object, str]:
    """The object a ``::: dotted.path`` names, and the module that exports it."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        value: object = module
        for name in parts[cut:]:
            value = getattr(value, name)
        return value, module.__name__
    raise AssertionError(path)


class TestReference:
    def test_undocumented_members_are_not_rendered(self) -> None:
        """The site does not render members without a docstring, and filters by each module's __all__."""
        config = (ROOT / "mkdocs.yml").read_text()
        assert "show_if_no_docstring" not in config
        assert re.search(r"^\s+filters: public$", config, re.MULTILINE)

    @pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
    def test_every_rendered_object_is_public(self, page: Path) -> None:
        """Each object a reference page renders is a public module or a name its module exports."""
        for target in DIRECTIVE.findall(page.read_text()):
            assert not any(part.startswith("_") for part in target.split(".")), target
            value, module = _resolve(target)
            if module != target:
                name = target[len(module) + 1 :].split(".")[0]
                assert name in importlib.import_module(module).__all__, target
            assert getattr(value, "__doc__", None), f"{target} has no docstring"

    def test_plumbing_is_not_on_the_backends_page(self) -> None:
        """The backends page lists what a user configures, not the handles behind it."""
        text = (ROOT / "docs" / "reference" / "backends.md").read_text()
        for plumbing in ("RedisCircuit", "LocalCircuit", "show_if_no_docstring"):
            assert plumbing not in text
