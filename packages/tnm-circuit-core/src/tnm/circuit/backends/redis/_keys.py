"""Key and channel names of one namespace.

Each service's keys share one Redis Cluster hash tag (its escaped name), so one
script can touch all of them. Namespace-wide keys (the epoch, the forced-open
registry) are only ever read or written by plain commands, never from the script.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["DISABLED_MARK", "PROBE_FIELD", "VERSION_FIELD", "Keys"]

DISABLED_MARK = "\x1fdisabled\x1f"
"""How an earlier release marked a ``disable`` in the registry (still read, never written)."""

PROBE_FIELD = "\x00probe"
"""The registry field ``initialize()`` writes and deletes to check its grants: a control
character, which no service name may hold."""

VERSION_FIELD = "v"
"""The state hash's field counting its writes (``circuit.lua``): it only grows while the
keys live, so one lower than a mirror read means the keys were lost and made again."""

_PROBE_TAG = "%probe"
"""The probe's hash tag: ``quote`` writes ``%`` only before two hex digits, so no
service's keys can have it."""

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
        self.policies = f"{namespace}:policies"
        """Hash of service -> fleet policy override (a JSON patch of numeric and mode fields):
        restored after a data loss, like ``forced``."""
        self.changes = f"{namespace}:changes"
        """Bumped by every published change (one server only: a Cluster script can't reach it)."""
        self.state_pattern = _glob_escape(f"{namespace}:{{") + "*}:state"

    def for_service(self, service: str, *, cluster: bool = False) -> tuple[str, ...]:
        """The script's keys for ``service``: state, failures and permits (one Cluster slot per
        service), and, on a single server, the namespace's change counter."""
        return self._for_tag(quote(service, safe=_TAG_SAFE), cluster)

    def probe(self, *, cluster: bool = False) -> tuple[str, ...]:
        """The keys ``initialize()``'s grant check writes and deletes (never a service's):
        state, failures, permits, rate buckets, reporters and, on a single server, the change
        counter."""
        state, failures, permits = self._for_tag(_PROBE_TAG, True)
        prefix = state[: -len("state")]
        keys = (state, failures, permits, f"{prefix}calls", f"{prefix}reporters")
        return keys if cluster else (*keys, self.changes)

    def _for_tag(self, tag: str, cluster: bool) -> tuple[str, ...]:
        prefix = f"{self.namespace}:{{{tag}}}"
        keys = (f"{prefix}:state", f"{prefix}:failures", f"{prefix}:permits")
        return keys if cluster else (*keys, self.changes)
