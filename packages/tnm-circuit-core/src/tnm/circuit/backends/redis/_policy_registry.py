"""Fleet-wide policy overrides of one namespace: stored, read by every process, restored.

A fleet override is a patch of a service's numeric and mode fields, kept as a JSON object
in the namespace's policy registry (``Keys.policies``: service -> patch). Each process's
refresher reads the registry every round (so a change reaches every process within
``refresh_interval``, and a process started later at ``initialize()``); a notice on the
channel makes the others read it at once. Like the operators' forced-open registry, what
this process knew is written again after the store lost its data (FLUSHALL, a restart
without persistence).

Setting fields merges them into the stored patch in one script run (no read-modify-write
from here); clearing deletes it. A value that is not a JSON object of plain values
(written by something else, or corrupt) is ignored with a rate-limited warning, reported as
``storage_repaired``, and rewritten from the last good value (or removed).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..._policy_overrides import check_patch, parse_patch
from ..._validate import service_name
from ...exceptions import CircuitBackendError, _chain_masked
from ._clients import STORAGE_ERRORS
from ._refusals import is_refusal
from ._script import decode

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["NOTICE_MARK", "PolicyRegistry", "policy_notice"]

NOTICE_MARK = "policy"
"""The ninth field of a circuit notice that says "the service's policy override changed"
(earlier releases read the first eight and re-read the service's keys: harmless)."""

_MERGE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local patch = {}
if current then
  local ok, value = pcall(cjson.decode, current)
  if ok and type(value) == 'table' then patch = value end
end
for name, value in pairs(cjson.decode(ARGV[2])) do patch[name] = value end
local encoded = cjson.encode(patch)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
return encoded
"""

OnChange = Callable[[str, "dict[str, Any] | None", list[str]], None]


def policy_notice(data: Any) -> str | None:
    """The service a policy notice names, or ``None`` if ``data`` is not one (cheap check)."""
    mark = f'"{NOTICE_MARK}"]'
    if mark not in (data if isinstance(data, str) else str(data)):
        return None
    try:
        fields = json.loads(data)
    except (ValueError, TypeError):
        return None
    if (
        isinstance(fields, list)
        and len(fields) >= 9
        and fields[8] == NOTICE_MARK
        and isinstance(fields[0], str)
    ):
        return fields[0]
    return None


class PolicyRegistry:
    """The namespace's fleet policy overrides, as of the refresher's last read."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.known: dict[str, str] = {}
        """service -> the valid patch (JSON) last read: what is applied, and restored after a loss."""
        self.pending: dict[str, str] = {}
        """Patches to write again after a data loss, until each has been."""
        self.on_change: OnChange | None = None
        """The breaker's hook: called with (service, patch or None, unknown field names)."""
        self._writes: dict[str, int] = {}
        """Writes made by this process, per service: a read begun before one is stale for it."""
        self._lock = threading.RLock()
        """Held while a read is applied and while a write is counted and applied, so that each
        sees the other whole: a read that began before a write leaves that service to the
        writer, who applies what it stored (re-entrant: a listener may write from the hook)."""

    # -- an operator's side (set_policy / clear_policy with fleet=True, the CLI) ---------------

    def store(self, service: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into ``service``'s stored override, tell every process, and return the
        override now stored. Each value is checked as ``ServicePolicy`` checks it first
        (``InvalidConfigError`` naming the field; nothing stored)."""
        service_name(service)
        patch = check_patch(patch)
        self._count_write(service)
        key = self._store.keys.policies
        written: list[Any] = []
        self._write(
            "EVAL",
            service,
            lambda client: written.append(client.eval(_MERGE, 1, key, service, json.dumps(dict(patch)))),
        )
        text = decode(written[0])
        merged, unknown = parse_patch(text)
        with self._lock:
            self._count_write(service)  # again: a read marked while the write ran is stale too
            self.known[service] = text
            self._changed(service, merged, unknown)
        self._notify(service)
        return merged

    def clear(self, service: str) -> None:
        """Remove ``service``'s override and tell every process."""
        service_name(service)
        self._count_write(service)
        self._write("HDEL", service, lambda client: client.hdel(self._store.keys.policies, service))
        with self._lock:
            self._count_write(service)
            self.known.pop(service, None)
            self._changed(service, None, [])
        self._notify(service)

    def _count_write(self, service: str) -> None:
        """Counted when a write starts and when it ends: a read whose mark differs leaves
        ``service`` alone (what it read may be older than what was written)."""
        with self._lock:
            self._writes[service] = self._writes.get(service, 0) + 1

    def read_all(self) -> dict[str, dict[str, Any]]:
        """Every stored override (unreadable ones left out), read now."""
        try:
            raw = self._store.client().hgetall(self._store.keys.policies)
        except STORAGE_ERRORS as exc:
            error = CircuitBackendError(
                f"cannot read the policy overrides: circuit store at {self._store.where} unavailable"
                f" ({self._store.health.describe(exc)})"
            )
            raise _chain_masked(error, exc, self._store.health.secrets.scrub) from error.__cause__
        found: dict[str, dict[str, Any]] = {}
        for name, value in raw.items():
            try:
                found[decode(name)] = json.loads(decode(value))
            except ValueError:
                continue
        return {name: patch for name, patch in found.items() if isinstance(patch, dict)}

    def _notify(self, service: str) -> None:
        notice = json.dumps([service, "closed", 0, 0, 0, 0, "", 0, NOTICE_MARK])
        with contextlib.suppress(*STORAGE_ERRORS):  # stored: read within refresh_interval anyway
            self._store.client().publish(self._store.keys.channel, notice)

    def _write(self, command: str, service: str, write: Callable[[Any], object]) -> None:
        store = self._store
        try:
            write(store.client())
        except STORAGE_ERRORS as exc:
            what = store.health.describe(exc)
            if is_refusal(exc):
                message = (
                    f"the Redis user at {store.where} may not run {command} on"
                    f" {store.keys.policies!r} (the policy registry): {what}"
                )
            else:
                store.failed(exc)
                message = f"circuit store at {store.where} unavailable ({what})"
            error = CircuitBackendError(
                f"the policy override of {service!r} was not stored: {message}", service=service
            )
            raise _chain_masked(error, exc, store.health.secrets.scrub) from error.__cause__

    # -- the refresher's side -------------------------------------------------------------

    def mark(self) -> dict[str, int]:
        """Taken before reading the registry: ``read`` then leaves alone the services this
        process wrote to meanwhile (what it read of them may be older than what it wrote)."""
        with self._lock:
            return dict(self._writes)

    def read(self, raw: dict[Any, Any], client: Any, mark: dict[str, int] | None = None) -> None:
        """The registry as just read (``HGETALL``), unless a restore is under way: apply what
        changed, and repair what cannot be read. Services this process wrote since ``mark``
        are left to the writer (what was read of them may be older than what it stored)."""
        if self.pending:
            return
        with self._lock:  # a write that ends meanwhile is counted and applied after this
            seen: dict[str, str] = {}
            for name, value in raw.items():
                service, text = decode(name), decode(value)
                if self._wrote(service, mark):  # asked per service: a hook may write meanwhile
                    continue
                try:
                    patch, unknown = parse_patch(text)
                except ValueError as exc:
                    self._repair(service, f"policy override unreadable ({exc})", client)
                    if service in self.known:
                        seen[service] = self.known[service]
                    continue
                seen[service] = text
                if self.known.get(service) != text:
                    self._changed(service, patch, unknown)
            # What this process wrote since the mark (a listener too, from the hook: this thread
            # holds the lock) stays as it wrote it.
            written = self._written_since(mark)
            for service in [s for s in self.known if s not in seen and s not in written]:
                self._changed(service, None, [])
            for service in written:
                seen.pop(service, None)
                if service in self.known:
                    seen[service] = self.known[service]
            self.known = seen

    def _wrote(self, service: str, mark: dict[str, int] | None) -> bool:
        return mark is not None and mark.get(service, 0) != self._writes.get(service, 0)

    def _written_since(self, mark: dict[str, int] | None) -> set[str]:
        if mark is None:
            return set()
        return {s for s, n in list(self._writes.items()) if mark.get(s) != n}

    def _changed(self, service: str, patch: dict[str, Any] | None, unknown: list[str]) -> None:
        if self.on_change is not None:
            self.on_change(service, patch, unknown)

    def _repair(self, service: str, what: str, client: Any) -> None:
        good = self.known.get(service)
        self._store.health.bad_data(service, what)
        with contextlib.suppress(*STORAGE_ERRORS):  # else tried again at the next round
            if good is None:
                client.hdel(self._store.keys.policies, service)
            else:
                client.hset(self._store.keys.policies, service, good)

    def lost(self) -> None:
        """The store lost its data: every override known here is to be written again."""
        with self._lock:
            self.pending.update(self.known)

    def restore(self, client: Any) -> int:
        """Write every pending override again; raises the store's error (they stay pending)."""
        restored = 0
        for name, text in list(self.pending.items()):
            client.hset(self._store.keys.policies, name, text)
            del self.pending[name]
            restored += 1
        return restored
