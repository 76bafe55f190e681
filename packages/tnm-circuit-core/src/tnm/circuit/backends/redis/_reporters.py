"""Reporter ids: who reported a call to the fleet's circuit.

The script keeps a small per-window set of reporters beside each circuit (``KEYS[5]``):
who calls (so that a rate decision waits for the successes other reporters have counted
and not sent yet), who failed (the quorum, ``ServicePolicy.min_failing_processes``) and
who is isolated. Each backend (``Store``) is one reporter: its id is the host name, the
pid and a random part, stable for the backend's lifetime, distinct after a pid is
reused, and new in a forked child (whose calls are its own). Two breakers in one process
are two reporters: each counts and sends its own successes.
"""

from __future__ import annotations

import os
import secrets
import socket

__all__ = ["new_reporter_id", "reporters_key"]


def new_reporter_id() -> str:
    """A new id for this process's backend (call it again in a forked child)."""
    host = socket.gethostname()[:64] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"


def reporters_key(state_key: str) -> str:
    """The reporters' key beside ``state_key`` (same hash tag, so the same Cluster slot)."""
    return state_key[: -len("state")] + "reporters"
