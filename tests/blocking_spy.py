"""A spy on a circuit handle's blocking methods: proves an async client never makes the breaker
do blocking I/O on the event loop (what the adapters' Redis tests check)."""

from __future__ import annotations

from typing import Any

import pytest

# The handle's methods that make a blocking Redis round trip.
SYNC_IO = ("acquire", "on_success", "on_failure", "on_ignored", "is_available", "snapshot", "last_failure")


def spy_on_blocking(handle: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap each of ``handle``'s ``SYNC_IO`` methods; the list returned names each call, in order."""
    blocking_calls: list[str] = []
    for name in SYNC_IO:
        method = getattr(handle, name)

        def spy(*args: Any, _name: str = name, _method: Any = method) -> Any:
            blocking_calls.append(_name)
            return _method(*args)

        monkeypatch.setattr(handle, name, spy)
    return blocking_calls
