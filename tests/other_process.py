"""Another process on the same Redis: what the adapters' Redis tests run beside their own breaker.

Each test file writes its own script (its client, its outcomes); this module runs it with the
Redis URL, the namespace of the root conftest's ``make_redis_breaker`` and ``POLICY`` in its
environment, and reads back the JSON list of outcomes it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from tnm.circuit import CircuitState

NAMESPACE = "test:circuit"  # the namespace of the root conftest's make_redis_breaker
POLICY = {"max_failures": 2, "open_seconds": 60}


def run_script(script: str, redis_url: str, *args: str, **env: str) -> list[Any]:
    """Run ``script`` with ``args`` in a new Python process (60 s at most) and return what it printed.

    The process sees ``REDIS_URL``, ``NAMESPACE`` and ``POLICY`` (JSON), and ``env`` besides."""
    environ = {
        **os.environ,
        "REDIS_URL": redis_url,
        "NAMESPACE": NAMESPACE,
        "POLICY": json.dumps(POLICY),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def until_open(handle: Any, timeout: float = 10.0) -> bool:
    """Wait (at most ``timeout``) until this process's mirror of the circuit says open."""
    deadline = time.monotonic() + timeout
    while handle.state is not CircuitState.OPEN and time.monotonic() < deadline:
        time.sleep(0.01)
    return handle.state is CircuitState.OPEN
