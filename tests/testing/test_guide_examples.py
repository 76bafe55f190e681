"""The test files shown in the guide's "Testing your own code" page pass as users would run them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "testing.md"
OPTIONS = ("-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function")


def section() -> str:
    return GUIDE.read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", section(), flags=re.DOTALL)


def guide_test_files() -> dict[str, str]:
    """The guide's blocks that are whole test files: their first line names the file."""
    files = {}
    for block in python_blocks():
        first = block.splitlines()[0]
        if re.fullmatch(r"# test_\w+\.py", first):
            files[first[2:]] = block
    return files


def test_the_guide_shows_the_three_test_files() -> None:
    """The page shows a shared-breaker test, a FastAPI route's test and a Celery task's test."""
    assert sorted(guide_test_files()) == ["test_payments.py", "test_publish_task.py", "test_search_api.py"]


def test_guide_test_files_pass(pytester: pytest.Pytester) -> None:
    """Every test in the guide's test files passes in a fresh pytest process (one run for all three)."""
    files = guide_test_files()
    pytester.makepyfile(**{name.removesuffix(".py"): code for name, code in files.items()})
    result = pytester.runpytest_subprocess(*OPTIONS, "-v", timeout=180)
    for name, code in files.items():
        tests = re.findall(r"^def (test_\w+)", code, flags=re.MULTILINE)
        assert tests, name
        result.stdout.fnmatch_lines([f"{name}::{test} PASSED*" for test in tests], consecutive=False)
    counts = {k: v for k, v in result.parseoutcomes().items() if k in ("passed", "failed", "errors")}
    assert counts == {
        "passed": sum(len(re.findall(r"^def test_", c, flags=re.MULTILINE)) for c in files.values())
    }


def test_the_snippet_without_pytest_runs() -> None:
    """The fake_redis_breaker snippet for users without pytest runs as shown."""
    (snippet,) = [b for b in python_blocks() if "fake_redis_breaker(server=server" in b]
    namespace: dict[str, object] = {}
    exec(compile(snippet, str(GUIDE), "exec"), namespace)
    assert not namespace["web"].initialized  # type: ignore[attr-defined]
