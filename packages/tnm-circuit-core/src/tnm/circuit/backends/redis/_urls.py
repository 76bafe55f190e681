"""Redis URLs: checked at construction, shown with every secret masked.

Forms (ACL user and password in the userinfo, as in ``redis://``; redis-py's query
options such as ``socket_timeout`` or ``ssl_ca_certs`` after ``?``):

* ``redis://host:port/db``, ``rediss://…`` (TLS), ``unix:///path.sock?db=0``: one server;
* ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` for TLS): the
  startup nodes of a Redis Cluster;
* ``redis+sentinel://host:port[,host:port...]/MASTER_NAME[/db]`` (``rediss+sentinel://``):
  the sentinels, and the name of the primary they watch.

A password may sit in the URL's userinfo (``redis://user:pw@host``) or in a query
parameter (``?password=pw``, which redis-py accepts too); both are masked wherever
the URL is shown, and ``Secrets`` scrubs them from any text that quotes them (a
server's error message, say).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from redis.connection import parse_url

from ...exceptions import InvalidConfigError, InvalidConfigTypeError

__all__ = ["Secrets", "Target", "check_url", "parse_target", "redact_url"]

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SCHEMES = (*SINGLE_SCHEMES, "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")
MASK = "***"


def _is_secret_param(name: str) -> bool:
    return "password" in name.lower() or name.lower() in {"token", "auth"}


def redact_url(url: str) -> str:
    """``url`` with every password (userinfo or query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        userinfo, at, hosts = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hosts}"
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
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            found += [password, unquote(password)]
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


@dataclass(frozen=True)
class Target:
    """Where the store is, parsed from a URL."""

    kind: str
    """``"single"``, ``"cluster"`` or ``"sentinel"``."""
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    """Cluster startup nodes or sentinels."""
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    """redis-py connection options from the query string (already converted)."""


def _hosts(text: str, default_port: int, shown: str) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in text.split(","):
        try:
            parts = urlsplit(f"//{item}")
            host, port = parts.hostname, parts.port or default_port
        except ValueError as exc:
            raise InvalidConfigError("redis_url", f"{shown}: bad host {item!r} ({exc})") from None
        if not host:
            raise InvalidConfigError("redis_url", f"{shown}: empty host in {text!r}")
        hosts.append((host, port))
    return tuple(hosts)


def parse_target(url: str) -> Target:
    """Parse a checked URL (see ``check_url``)."""
    shown = redact_url(url)
    scheme = url.split("://", 1)[0]
    if scheme in SINGLE_SCHEMES:
        return Target("single", url)
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        username = unquote(name) or None
        password = unquote(secret) if colon else None
    try:
        options = parse_url(f"redis://localhost/?{parts.query}")  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise InvalidConfigError("redis_url", f"{shown}: {exc}") from None
    for key in ("host", "port", "db", "username", "password", "connection_class"):
        options.pop(key, None)
    ssl = scheme.startswith("rediss")
    path = [p for p in parts.path.split("/") if p]
    if scheme.endswith("+cluster"):
        if path and path != ["0"]:
            raise InvalidConfigError("redis_url", f"{shown}: a Redis Cluster has only database 0")
        return Target("cluster", url, _hosts(hosts, 6379, shown), "", 0, username, password, ssl, options)
    if not path or len(path) > 2:
        raise InvalidConfigError(
            "redis_url", f"{shown}: name the primary: redis+sentinel://HOSTS/MASTER_NAME[/db]"
        )
    if len(path) == 2 and not path[1].isdigit():
        raise InvalidConfigError("redis_url", f"{shown}: database must be a number, got {path[1]!r}")
    db = int(path[1]) if len(path) == 2 else 0
    return Target(
        "sentinel", url, _hosts(hosts, 26379, shown), unquote(path[0]), db, username, password, ssl, options
    )


def check_url(url: object) -> str:
    """Return ``url`` if it names a Redis server redis-py can use; else InvalidConfigError."""
    if not isinstance(url, str):
        raise InvalidConfigTypeError("redis_url", f"must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise InvalidConfigError("redis_url", f"{shown}: scheme must be one of {', '.join(SCHEMES)}")
    if scheme not in SINGLE_SCHEMES:
        parse_target(url)
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidConfigError("redis_url", f"{shown} is malformed ({exc})") from None
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
