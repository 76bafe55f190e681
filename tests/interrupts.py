"""Ctrl-C for a child process, however this test run was started.

A run started in the background by a non-interactive shell (``cmd &``) inherits SIGINT
ignored, and so would every child it starts: Python then never turns SIGINT into
``KeyboardInterrupt``. A test that sends SIGINT starts its child with ``preexec_fn=ctrl_c_works``.
"""

from __future__ import annotations

import signal


def ctrl_c_works() -> None:
    """In the child, before it runs: SIGINT back to its default (Python's own handler then)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
