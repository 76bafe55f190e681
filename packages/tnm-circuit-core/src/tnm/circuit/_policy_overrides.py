"""Policy overrides made at run time: which fields may change, how a patch is merged, and what
changed (for the ``POLICY_CHANGED`` event).

A run-time change replaces only the numeric and mode fields of a ``ServicePolicy``
(``PATCHABLE_FIELDS``); exception rules, return-value rules and predicates stay the code's,
so a patch can be stored in a shared store as plain numbers and merged over each process's
own policy. A merge builds a new ``ServicePolicy``, so it is validated exactly as one built
in code: an invalid patch raises ``InvalidConfigError`` naming the field, never half-applies.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

from . import _validate
from .exceptions import InvalidConfigError, InvalidConfigTypeError
from .policies import MODES, ServicePolicy

__all__ = ["PATCHABLE_FIELDS", "SOURCES", "changes", "check_patch", "merge", "parse_patch", "patch_of"]

PATCHABLE_FIELDS: Final = (
    "window_seconds",
    "max_failures",
    "open_seconds",
    "max_open_seconds",
    "half_open_max_calls",
    "success_threshold",
    "backoff_multiplier",
    "trial_timeout_seconds",
    "failure_rate_threshold",
    "minimum_calls",
    "slow_call_seconds",
    "slow_call_rate_threshold",
    "min_failing_processes",
    "mode",
)
"""The ``ServicePolicy`` fields a run-time override may set (numbers and ``mode``)."""

SOURCES: Final = ("code", "process", "fleet")
"""Where a service's effective policy comes from (``CircuitBreaker.policy_source``)."""


def patch_of(policy: ServicePolicy) -> dict[str, Any]:
    """The patchable fields of ``policy`` (what ``set_policy(..., fleet=True)`` stores)."""
    return {name: getattr(policy, name) for name in PATCHABLE_FIELDS}


def merge(code: ServicePolicy, patch: Mapping[str, Any]) -> ServicePolicy:
    """``code`` with the fields of ``patch`` replaced, validated as a ``ServicePolicy`` is.

    ``open_seconds`` and ``max_open_seconds`` that ``code`` left to their defaults (equal to
    ``window_seconds`` and ten times ``open_seconds``) follow the fields they default from,
    as they would have in code. Raises ``InvalidConfigError`` naming the field.
    """
    for name in patch:
        if name not in PATCHABLE_FIELDS:
            raise InvalidConfigError(name, "cannot be changed at run time (not a numeric or mode field)")
    values = dict(patch)
    if (
        "open_seconds" not in values
        and "window_seconds" in values
        and code.open_seconds == code.window_seconds
    ):
        values["open_seconds"] = None
    if (
        "max_open_seconds" not in values
        and ("open_seconds" in values or "window_seconds" in values)
        and code.max_open_seconds == (code.open_seconds or 0) * 10
    ):
        values["max_open_seconds"] = None
    return dataclasses.replace(code, **values)


def parse_patch(raw: str | bytes) -> tuple[dict[str, Any], list[str]]:
    """A stored patch (a JSON object): the known fields, and the names of the unknown ones.

    Unknown fields come from a newer release sharing the namespace during a deploy: the
    caller ignores them (and says so once). Raises ``ValueError`` if ``raw`` is not a JSON
    object of plain values (corrupt or foreign data).
    """
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"a policy override is a JSON object, got {type(data).__name__}")
    known: dict[str, Any] = {}
    unknown: list[str] = []
    for name, value in data.items():
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"field {name!r} holds {type(value).__name__}, not a plain value")
        if name in PATCHABLE_FIELDS:
            known[name] = value
        else:
            unknown.append(name)
    return known, sorted(unknown)


def _check_field(name: str, value: Any) -> Any:
    """One field's value checked as ``ServicePolicy`` checks it (cross-field rules aside)."""
    if name == "mode":
        if value not in MODES:
            raise InvalidConfigError("mode", f"must be one of {MODES}, got {value!r}")
        return value
    if value is None and name in _OPTIONAL:
        return None
    if name in _INTS:
        return _validate.positive_int(name, value)
    if name in _RATES:
        return _validate.rate(name, value)
    seconds = _validate.duration(name, value, allow_zero=name in _ZERO_OK)
    if name == "backoff_multiplier" and seconds < 1.0:
        raise InvalidConfigError(name, f"must be >= 1.0, got {value!r}")
    return seconds


_INTS = frozenset({"max_failures", "half_open_max_calls", "success_threshold", "minimum_calls"})
_RATES = frozenset({"failure_rate_threshold", "slow_call_rate_threshold"})
_ZERO_OK = frozenset({"open_seconds", "max_open_seconds"})
_OPTIONAL = frozenset(
    {"max_failures", "failure_rate_threshold", "slow_call_seconds", "slow_call_rate_threshold"}
)


def check_patch(patch: Mapping[str, Any]) -> dict[str, Any]:
    """``patch`` checked field by field as ``ServicePolicy`` checks each value (the rules that
    tie fields together are checked when it is merged over a process's own policy);
    ``InvalidConfigError`` naming the first bad field."""
    if not isinstance(patch, Mapping):
        raise InvalidConfigTypeError("policy", f"must be a mapping of fields, got {patch!r}")
    if not patch:
        raise InvalidConfigError("policy", "names no field to change")
    checked: dict[str, Any] = {}
    for name, value in patch.items():
        if name not in PATCHABLE_FIELDS:
            raise InvalidConfigError(name, "cannot be changed at run time (not a numeric or mode field)")
        checked[name] = _check_field(name, value)
    return checked


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def changes(old: ServicePolicy, new: ServicePolicy) -> str:
    """The patchable fields that differ, as ``"max_failures: 5 -> 3, open_seconds: 30 -> 20"``
    (``"no change"`` when none does)."""
    parts = [
        f"{name}: {_shown(getattr(old, name))} -> {_shown(getattr(new, name))}"
        for name in PATCHABLE_FIELDS
        if getattr(old, name) != getattr(new, name)
    ]
    return ", ".join(parts) if parts else "no change"
