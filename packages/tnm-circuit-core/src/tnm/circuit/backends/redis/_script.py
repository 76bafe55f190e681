"""The Lua script that holds the state machine in Redis, and its replies and messages.

Every change to a circuit is one run of ``circuit.lua`` (beside this module): atomic in Redis, with
time from Redis ``TIME``. This module runs it (re-sending the script when a flushed
or restarted server answers ``NOSCRIPT``) and turns what it returns, or publishes,
into checked Python values: garbage raises ``BadReply`` instead of a ``KeyError``
deep in a caller's stack.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any, NamedTuple

from redis.exceptions import NoScriptError

from ...state import OPENED_BY, CircuitState
from ._packing import acall_packed, call_packed, packed_run, packs_own

__all__ = [
    "SCRIPT",
    "SHA",
    "BadReply",
    "Notice",
    "Reply",
    "aeval",
    "eval_script",
    "parse_message",
]

SCRIPT = resources.files("tnm.circuit.backends.redis").joinpath("circuit.lua").read_text(encoding="utf-8")
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
SHA_BYTES = SHA.encode()
STATES: dict[Any, CircuitState] = {
    **{s.value: s for s in CircuitState},
    **{s.value.encode(): s for s in CircuitState},  # as the script's reply holds them
}


class BadReply(ValueError):
    """A reply or message that does not have the script's shape (corrupt or foreign data)."""


def decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(value: Any) -> str:
    """Text for people (a failure's reason): bytes that are not UTF-8 are shown replaced."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _shown(value: Any) -> str:
    """``value`` for an error message: short, and whatever bytes it holds."""
    return repr(_text(value)[:40])


def _state(value: Any) -> CircuitState:
    try:
        return STATES[value]
    except (KeyError, TypeError):  # TypeError: unhashable, a nested reply
        raise BadReply(f"unknown state {_shown(value)}") from None


def _number(value: Any) -> float:
    if value.__class__ is bool:  # (JSON's true in a notice; a reply never holds one)
        raise BadReply(f"not a number: {value!r}")
    try:
        number = float(value)  # takes the reply's bytes as they are
    except (ValueError, TypeError, OverflowError):
        raise BadReply(f"not a number: {_shown(value)}") from None
    if not math.isfinite(number):
        raise BadReply(f"not a finite number: {number}")
    return number


def _int(value: Any) -> int:
    """A count: the script's integer replies come as ``int`` already (no conversion)."""
    if value.__class__ is int:
        return value
    return int(_number(value))


def _optional_number(value: Any) -> float | None:
    return None if value == b"" or value == "" else _number(value)


class Probe(Exception):
    """The notice ``initialize()`` publishes to check its grant on the channel: not news."""


class Reply(NamedTuple):
    """What one run of the script says about its circuit (times in server milliseconds)."""

    state: CircuitState
    open_until_ms: float
    failures: int
    now_ms: float
    result: int
    reopenings: int
    last: tuple[str, float] | None
    permits: int
    earliest_permit_ms: float | None
    path: list[CircuitState]
    max_failures: int
    window_seconds: float
    repaired: bool
    version: int
    calls: int = 0
    """Calls in the rate window (closed circuits with a rate policy; else 0)."""
    window_failures: int = 0
    slow_calls: int = 0
    opened_by: str | None = None
    """Why the circuit is open or half-open; ``None`` while closed or disabled."""
    opened_figures: tuple[int, int, int, int] | None = None
    """(failures, calls, failed calls, slow calls) that opened it, kept until it closes."""
    failing_processes: int = 0
    """Distinct processes that reported a failure inside the window."""
    decision_due_ms: float | None = None
    """When a rate decision the script deferred (to hear other processes' successes) is due."""
    others_seen: bool | None = True
    """Another process called inside the window (alone, this process's verdict is the fleet's);
    ``None`` if the run did not look (only a run that may isolate its process does)."""

    @classmethod
    def parse(cls, raw: Any) -> Reply:
        try:
            last_ms = _optional_number(raw[7])
            return cls(
                state=_state(raw[0]),
                open_until_ms=_number(raw[1]),
                failures=_int(raw[2]),
                now_ms=_number(raw[3]),
                result=_int(raw[4]),
                reopenings=_int(raw[5]),
                last=None if last_ms is None else (_text(raw[6]), last_ms),
                permits=_int(raw[8]),
                earliest_permit_ms=_optional_number(raw[9]),
                path=[_state(s) for s in raw[10]],
                max_failures=_int(raw[11]),
                window_seconds=_number(raw[12]) / 1000.0,
                repaired=bool(_int(raw[13])),
                version=_int(raw[14]),
                **_window(raw),
                **_opened(raw),
                **_fleet(raw),
            )
        except (IndexError, TypeError, UnicodeDecodeError) as exc:
            raise BadReply(f"malformed script reply ({exc})") from None


def _window(raw: Any) -> dict[str, Any]:
    """The rate window's counts, appended after the 15 original fields of a reply."""
    if len(raw) < 18:
        return {}
    return {
        "calls": _int(raw[15]),
        "window_failures": _int(raw[16]),
        "slow_calls": _int(raw[17]),
    }


def _opened(raw: Any) -> dict[str, Any]:
    """Why the circuit opened and the figures that did, appended after the rate window."""
    if len(raw) < 20 or decode(raw[18]) not in OPENED_BY:
        return {}
    figures = decode(raw[19]).split(":")
    if len(figures) != 4:
        return {"opened_by": decode(raw[18])}
    failures, calls, failed, slow = (_int(f) for f in figures)
    return {"opened_by": decode(raw[18]), "opened_figures": (failures, calls, failed, slow)}


def _fleet(raw: Any) -> dict[str, Any]:
    """Failing processes and a deferred decision, appended after why the circuit opened."""
    if len(raw) < 23:
        return {}
    return {
        "failing_processes": _int(raw[20]),
        "decision_due_ms": _optional_number(raw[21]),
        "others_seen": None if decode(raw[22]) == "" else decode(raw[22]) == "1",
    }


class Notice(NamedTuple):
    """A change published by some process's script run."""

    service: str
    state: CircuitState
    open_until_ms: float
    failures: int
    now_ms: float
    permits: int
    earliest_permit_ms: float | None
    version: int


def parse_message(data: Any) -> Notice:
    try:
        fields = json.loads(data)
        if fields == [""]:
            raise Probe
        if not isinstance(fields, list) or len(fields) < 5 or not isinstance(fields[0], str):
            raise BadReply("not a circuit notice")
        permits, earliest, version = (fields[5], fields[6], fields[7]) if len(fields) >= 8 else (0, "", 0)
        return Notice(
            service=fields[0],
            state=_state(fields[1]),
            open_until_ms=_number(fields[2]),
            failures=_int(fields[3]),
            now_ms=_number(fields[4]),
            permits=_int(permits),
            earliest_permit_ms=_optional_number(earliest),
            version=_int(version),
        )
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadReply(f"malformed notice ({exc})") from None


def eval_script(client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
    try:
        if packs_own(client):
            return call_packed(client, packed_run(SHA_BYTES, keys, args))
        return client.evalsha(SHA, len(keys), *keys, *args)
    except NoScriptError:
        # A flushed or restarted server forgot it: EVAL runs it and caches it again.
        return client.eval(SCRIPT, len(keys), *keys, *args)


async def aeval(client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
    try:
        if packs_own(client):
            return await acall_packed(client, packed_run(SHA_BYTES, keys, args))
        return await client.evalsha(SHA, len(keys), *keys, *args)
    except NoScriptError:
        return await client.eval(SCRIPT, len(keys), *keys, *args)
