"""The test files shown in the guide's "Testing your own code" section pass as users would run them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"
OPTIONS = ("-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function")


def section() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("## Testing your own code")
    return text[start : text.index("\n## ", start + 1)]


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
    """The section shows a shared-breaker test, a FastAPI route's test and a Celery task's test."""
    assert sorted(guide_test_files()) == ["test_payments.py", "test_publish_task.py", "test_search_api.py"]


@pytest.mark.parametrize("name", ["test_payments.py", "test_publish_task.py", "test_search_api.py"])
def test_guide_test_file_passes(pytester: pytest.Pytester, name: str) -> None:
    """Each test file from the guide passes in a fresh pytest process, every test in it."""
    code = guide_test_files()[name]
    pytester.makepyfile(**{name.removesuffix(".py"): code})
    result = pytester.runpytest_subprocess(*OPTIONS, timeout=120)
    expected = len(re.findall(r"^def test_", code, flags=re.MULTILINE))
    counts = {k: v for k, v in result.parseoutcomes().items() if k in ("passed", "failed", "errors")}
    assert counts == {"passed": expected}, result.stdout.str()


def test_the_snippet_without_pytest_runs() -> None:
    """The fake_redis_breaker snippet for users without pytest runs as shown."""
    (snippet,) = [b for b in python_blocks() if "fake_redis_breaker(server=server" in b]
    namespace: dict[str, object] = {}
    exec(compile(snippet, str(GUIDE), "exec"), namespace)
    assert not namespace["web"].initialized  # type: ignore[attr-defined]
