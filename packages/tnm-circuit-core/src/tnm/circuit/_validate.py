"""Checks shared by every constructor: each failure names the offending field."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from .exceptions import InvalidConfigError, InvalidConfigTypeError

MAX_SERVICE_NAME_LENGTH = 200
MAX_REASON_LENGTH = 500


def service_name(value: object, field: str = "service") -> str:
    """Return ``value`` unchanged if it is a usable service name.

    Names are case-sensitive and never normalised: ``my-service`` and ``My_Service``
    are different circuits. A name must be printable (no newline, tab or other control
    character: names end up in status tables, log lines and Redis keys) and may not be
    made of spaces only.
    """
    if not isinstance(value, str):
        raise InvalidConfigTypeError(field, f"must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidConfigError(field, "must not be empty")
    if len(value) > MAX_SERVICE_NAME_LENGTH:
        raise InvalidConfigError(
            field, f"must be at most {MAX_SERVICE_NAME_LENGTH} characters, got {len(value)}"
        )
    if not value.strip():
        raise InvalidConfigError(field, f"must not be blank, got {value!r}")
    if not value.isprintable():
        raise InvalidConfigError(field, f"must not contain control characters, got {value!r}")
    return value


def duration(field: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidConfigTypeError(field, f"must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise InvalidConfigError(field, f"must be finite, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidConfigError(field, f"must be {bound} seconds, got {value!r}")
    return seconds


def rate(field: str, value: object) -> float:
    """A share of calls: a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidConfigTypeError(field, f"must be a number in (0, 1], got {value!r}")
    share = float(value)
    if not (0.0 < share <= 1.0):
        raise InvalidConfigError(field, f"must be in (0, 1], got {value!r}")
    return share


def positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfigTypeError(field, f"must be an int, got {value!r}")
    if value < 1:
        raise InvalidConfigError(field, f"must be >= 1, got {value!r}")
    return value


def exception_rules(
    field: str, value: object
) -> tuple[type[BaseException] | Callable[[BaseException], bool], ...]:
    """Normalise exception classes and predicates (or one of either) to a tuple.

    An entry is an exception class, or a callable that is not a class (a predicate taking
    the exception, ``lambda e: getattr(e, "status", 0) >= 500``); anything else, a class
    that is not an exception class included, is an ``InvalidConfigTypeError`` naming ``field``.
    """
    if value is None:
        return ()
    if isinstance(value, type) or (callable(value) and not isinstance(value, Iterable)):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidConfigTypeError(
            field, f"must be an iterable of exception classes or predicates, got {value!r}"
        )
    rules: list[type[BaseException] | Callable[[BaseException], bool]] = []
    for item in value:
        if isinstance(item, type):
            if not issubclass(item, BaseException):
                raise InvalidConfigTypeError(field, f"{item!r} is not an exception class")
        elif not callable(item):
            raise InvalidConfigTypeError(
                field,
                f"{item!r} is neither an exception class nor a predicate (a callable taking the exception)",
            )
        rules.append(item)
    return tuple(rules)


def exception_reason(exc: BaseException) -> str:
    """``"Type: message"``, or ``"Type"`` alone for an exception without a message (or whose
    ``str()`` raises: the failure still counts); bounded."""
    try:
        message = str(exc)
    except Exception:
        message = ""
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return reason if len(reason) <= MAX_REASON_LENGTH else bounded_reason(reason)


def bounded_reason(reason: Any) -> str:
    """Failure reasons are stored bounded: they end up in Redis, logs and HTTP bodies."""
    text = reason if isinstance(reason, str) else str(reason)
    if len(text) > MAX_REASON_LENGTH:
        return text[: MAX_REASON_LENGTH - 1] + "…"
    return text
