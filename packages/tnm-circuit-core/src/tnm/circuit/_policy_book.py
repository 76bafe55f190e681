"""Each service's policy from its three sources: the code's, this process's override, the fleet's.

The breaker asks ``effective`` only when a circuit is made or a policy changes; the call
path reads the policy its circuit holds. A fleet override (a patch of numeric and mode
fields stored in a shared store) wins over a process override, which wins over the code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from . import _policy_overrides
from .events import CircuitEvent, EventKind, ListenerList
from .exceptions import InvalidConfigError
from .policies import ServicePolicy

__all__ = ["PolicyBook"]

logger = logging.getLogger("tnm.circuit")


class PolicyBook:
    """The policies a breaker knows, by source (not thread-safe: the breaker holds its lock)."""

    __slots__ = ("_warned", "default", "fleet", "fleet_patches", "process", "services")

    def __init__(self, default: ServicePolicy, services: Mapping[str, ServicePolicy]) -> None:
        self.default = default
        self.services = services
        self.process: dict[str, ServicePolicy] = {}
        """Overrides made in this process (``set_policy``)."""
        self.fleet: dict[str, ServicePolicy] = {}
        """Fleet overrides merged over the code's policy and found valid here."""
        self.fleet_patches: dict[str, dict[str, Any]] = {}
        """The fleet patches as read (applied or refused): the same one read again changes nothing."""
        self._warned: set[tuple[str, tuple[str, ...]]] = set()

    def code(self, service: str) -> ServicePolicy:
        return self.services.get(service, self.default)

    def effective(self, service: str) -> ServicePolicy:
        policy = self.fleet.get(service)
        if policy is None:
            policy = self.process.get(service)
        return self.code(service) if policy is None else policy

    def source(self, service: str) -> str:
        if service in self.fleet:
            return "fleet"
        return "process" if service in self.process else "code"

    def take_fleet(
        self, service: str, patch: Mapping[str, Any] | None
    ) -> tuple[bool, InvalidConfigError | None]:
        """Record the fleet ``patch`` read for ``service`` (``None``: none any more): whether it
        is news, and why it is refused here if merging it over the code's policy is invalid
        (then the policy in force stays as it was: never half-applied)."""
        new = None if patch is None else dict(patch)
        if self.fleet_patches.get(service) == new and (new is not None or service not in self.fleet):
            return False, None
        if new is None:
            self.fleet_patches.pop(service, None)
            self.fleet.pop(service, None)
            return True, None
        self.fleet_patches[service] = new
        try:
            self.fleet[service] = self.merge_fleet(service, new)
        except InvalidConfigError as exc:
            return True, exc
        return True, None

    def warn_unknown(self, service: str, unknown: Iterable[str]) -> None:
        """One warning per service and set of fields a newer release wrote (ignored here)."""
        names = tuple(sorted(unknown))
        if names and (service, names) not in self._warned:
            self._warned.add((service, names))
            logger.warning(
                "policy of %r: fleet override field(s) %s unknown to this version, ignored",
                service,
                ", ".join(names),
            )

    def merge_fleet(self, service: str, patch: Mapping[str, Any]) -> ServicePolicy:
        """The fleet ``patch`` merged over this process's code policy for ``service``;
        ``InvalidConfigError`` naming the field if the result is not a valid policy here."""
        return _policy_overrides.merge(self.code(service), patch)


def announce(
    listeners: ListenerList,
    service: str,
    source: str,
    reason: str,
    ts: float,
    state: Any = None,
    refused: bool = False,
) -> None:
    """Log one line and emit ``POLICY_CHANGED`` for a change applied (or refused) here."""
    if refused:
        logger.warning("policy of %r: fleet change refused in this process: %s", service, reason)
    else:
        logger.info("policy of %r changed (source: %s): %s", service, source, reason)
    if listeners.callbacks:
        listeners.emit(
            CircuitEvent(EventKind.POLICY_CHANGED, service, state, ts, reason=reason, source=source)
        )


def refusal(exc: InvalidConfigError) -> str:
    """The ``reason`` of a refused fleet change: the field and what is wrong with it."""
    return f"refused: {exc}"
