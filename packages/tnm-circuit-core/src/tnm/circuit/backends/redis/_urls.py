"""Redis URLs: checked at construction, shown with every secret masked.

A password may sit in the URL's userinfo (``redis://user:pw@host``) or in a query
parameter (``?password=pw``, which redis-py accepts too); both are masked wherever
the URL is shown, and ``Secrets`` scrubs them from any text that quotes them (a
server's error message, say).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from redis.connection import parse_url

from ...exceptions import InvalidConfigError, InvalidConfigTypeError

__all__ = ["Secrets", "check_url", "redact_url"]

SCHEMES = ("redis", "rediss", "unix")
MASK = "***"


def _is_secret_param(name: str) -> bool:
    return "password" in name.lower() or name.lower() in {"token", "auth"}


def redact_url(url: str) -> str:
    """``url`` with every password (userinfo or query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:{MASK}@{netloc.rsplit('@', 1)[-1]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, MASK if _is_secret_param(k) else v) for k, v in pairs], safe="*")
        return parts._replace(netloc=netloc, query=query).geturl()
    except ValueError:
        return "<unparseable redis url>"


def url_secrets(url: str) -> list[str]:
    """Every secret a URL carries, in the forms it may be quoted (raw and decoded)."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [v for k, v in parse_qsl(parts.query) if _is_secret_param(k) and v]
    except ValueError:
        pass
    return found


class Secrets:
    """The secrets of one backend's configuration, to scrub from any text shown to people."""

    def __init__(self, values: Iterable[object] = ()) -> None:
        texts = {v for v in values if isinstance(v, str) and v}
        ordered = sorted(texts, key=len, reverse=True)  # longest first: no partial leftovers
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def scrub(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(MASK, text)


def check_url(url: object) -> str:
    """Return ``url`` if it names a Redis server redis-py can use; else InvalidConfigError."""
    if not isinstance(url, str):
        raise InvalidConfigTypeError("redis_url", f"must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidConfigError("redis_url", f"{shown} is malformed ({exc})") from None
    if parts.scheme not in SCHEMES:
        raise InvalidConfigError("redis_url", f"{shown}: scheme must be one of {', '.join(SCHEMES)}")
    if parts.scheme != "unix" and not parts.hostname:
        raise InvalidConfigError("redis_url", f"{shown} has no host")
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise InvalidConfigError("redis_url", f"{shown}: database must be a number, got {db!r}")
    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # the query options, as redis-py reads them
    except ValueError as exc:
        raise InvalidConfigError("redis_url", f"{shown}: {exc}") from None
    return url
