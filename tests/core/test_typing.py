"""What a user's own code sees under ``mypy --strict``: results keep their precise types."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

SNIPPET = """
import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from tnm.circuit import CircuitBreaker
from tnm.circuit_fastapi import breaker_lifespan

breaker = CircuitBreaker()

async def fetch(user_id: int) -> dict[str, int]:
    return {"id": user_id}

class Loader:
    async def __call__(self, key: str) -> bytes:
        return key.encode()

def load(user_id: int) -> list[int]:
    return [user_id]

@breaker.protect("svc")
async def guarded(user_id: int) -> float:
    return 1.0

async def main() -> None:
    r = await breaker.execute_async("svc", fetch, 1)
    reveal_type(r)  # coroutine function
    b = await breaker.execute_async("svc", Loader(), "k")
    reveal_type(b)  # async callable object
    t = await breaker.execute_async("svc", asyncio.ensure_future(fetch(1)))
    reveal_type(t)  # awaitable
    s = breaker.execute("svc", load, 1)
    reveal_type(s)  # sync callable
    reveal_type(guarded)  # protect keeps the signature

# breaker_lifespan takes the app's lifespan in every form FastAPI does.
@asynccontextmanager
async def decorated(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {}

async def bare_async(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {}

def bare_sync(app: FastAPI) -> Iterator[None]:
    yield

one = FastAPI(lifespan=breaker_lifespan(breaker, decorated))
two = FastAPI(lifespan=breaker_lifespan(breaker, bare_async))
three = FastAPI(lifespan=breaker_lifespan(breaker, bare_sync))
"""

EXPECTED = [
    "dict[str, int]",
    "bytes",
    "dict[str, int]",
    "list[int]",
    "def (user_id: int) -> typing.Coroutine[Any, Any, float]",
]


class TestStrictTypes:
    def test_results_are_typed_from_the_callable(self, tmp_path: Path) -> None:
        """execute_async, execute and protect give precise types; each lifespan form type-checks."""
        source = tmp_path / "snippet.py"
        source.write_text(textwrap.dedent(SNIPPET), encoding="utf-8")
        stdout, stderr, _ = mypy_api.run(
            ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(source)]
        )
        # Older mypy releases spell builtins with their module: compare without it.
        revealed = [t.replace("builtins.", "") for t in re.findall(r'Revealed type is "(.*)"', stdout)]
        errors = [line for line in stdout.splitlines() if ": error:" in line]
        assert errors == [], stdout + stderr
        assert revealed == EXPECTED, stdout
