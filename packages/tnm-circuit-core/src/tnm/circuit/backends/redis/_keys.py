"""Key and channel names of one namespace.

Each service's keys share one Redis Cluster hash tag (its escaped name), so one
script can touch all of them. Namespace-wide keys (the epoch, the forced-open
registry) are only ever read or written by plain commands, never from the script.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["DISABLED_MARK", "Keys"]

DISABLED_MARK = "\x1fdisabled\x1f"
"""Starts a value of the forced-open registry that records ``disable`` rather than ``force_open``."""

# Braces would end the Redis Cluster hash tag early; escape them (and %) so the key
# still names exactly one service. The name itself is stored verbatim in the hash.
_TAG_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) not in "{}%")


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class Keys:
    """The names under ``namespace``."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.channel = f"{namespace}:events"
        self.epoch = f"{namespace}:epoch"
        """A random value set once: when it disappears, the store lost its data."""
        self.forced = f"{namespace}:forced"
        """Hash of service -> reason for every forced-open (or, marked, disabled) circuit: an
        operator's decision, restored after a data loss."""
        self.changes = f"{namespace}:changes"
        """Bumped by every published change (one server only: a Cluster script can't reach it)."""
        self.state_pattern = _glob_escape(f"{namespace}:{{") + "*}:state"

    def for_service(self, service: str, *, cluster: bool = False) -> tuple[str, ...]:
        """The script's keys for ``service``: state, failures and permits (one Cluster slot per
        service), and, on a single server, the namespace's change counter."""
        prefix = f"{self.namespace}:{{{quote(service, safe=_TAG_SAFE)}}}"
        keys = (f"{prefix}:state", f"{prefix}:failures", f"{prefix}:permits")
        return keys if cluster else (*keys, self.changes)
