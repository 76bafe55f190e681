"""Refusals: the server answered and said no (a missing ACL grant), which is not an outage.

A refused command is a configuration error: retrying will not help and the store is
up, so it never counts as ``storage_degraded``. These helpers tell a refusal from the
other errors and name what was refused.
"""

from __future__ import annotations

import re

from redis.exceptions import NoPermissionError

from ._script import SCRIPT

__all__ = ["is_refusal", "named_grant"]

_MARKERS = (
    *("noperm", "no permissions", "acl failure"),
    *("can't run this command", "can't access", "can't publish"),
)
"""How Redis and Valkey word a refusal (in lower case; inside a script neither gives the code)."""


def is_refusal(exc: BaseException) -> bool:
    """True if the server refused the command for want of a grant."""
    text = str(exc).lower()
    return isinstance(exc, NoPermissionError) or any(marker in text for marker in _MARKERS)


def named_grant(exc: BaseException, channel: str) -> str:
    """Which grant is missing, where Redis's message does not say it plainly.

    Inside a script Redis names only the script's line: the command is read from it.
    """
    text = str(exc)
    if "channel" in text:
        return f" (the channel {channel!r}: &{channel})"
    line = re.search(r"@user_script:(\d+)", text)
    if line is not None:
        lines = SCRIPT.splitlines()
        number = int(line.group(1))
        command = re.search(r"redis\.call\('(\w+)'", lines[number - 1]) if 0 < number <= len(lines) else None
        if command is not None:
            what = "a key under the namespace" if "access" in text else f"+{command.group(1).lower()}"
            return f" ({what}, used by the script's {command.group(1)})"
    return ""
