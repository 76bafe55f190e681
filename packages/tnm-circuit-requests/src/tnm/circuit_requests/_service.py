"""Which circuit a request goes through: its upstream's ``host:port`` unless told otherwise."""

from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from tnm.circuit.http import service_namer as shared_namer
from tnm.circuit.http import upstream_name

__all__ = ["ServiceName", "authority", "service_namer"]

ServiceName = Callable[[requests.PreparedRequest], str]
"""What ``service=`` accepts besides a fixed name: ``(request) -> service name``."""


def authority(request: requests.PreparedRequest) -> str:
    """The request's upstream as ``host:port``, the port always given (``api.example.com:443``).

    The name never holds the URL's user name or password. An IPv6 host is bracketed
    (``[::1]:8080``). This is the adapter's default service name; call it from your own
    ``service=`` function to keep it for some requests.
    """
    return _authority(request) or ""


def _authority(request: requests.PreparedRequest) -> str | None:
    """``authority``, or ``None`` for a URL without a host."""
    scheme, sep, rest = (request.url or "").partition("://")
    if not sep:
        return None
    # "user:pw@host:port" from "scheme://user:pw@host:port/path?query#fragment", without the user.
    hostport = rest.partition("/")[0].partition("?")[0].partition("#")[0].rpartition("@")[2]
    return _name(scheme.lower(), hostport)


@functools.lru_cache(maxsize=1024)  # bounded: a client calling many hosts keeps no more than this
def _name(scheme: str, hostport: str) -> str | None:
    """``host:port`` of one URL authority (parsing a URL costs more than the rest of the adapter)."""
    try:
        parts = urlsplit(f"{scheme}://{hostport}/")
        host, port = parts.hostname, parts.port
    except ValueError:  # a bad port: requests raises its own error for it
        return None
    return upstream_name(scheme, host, port)


def service_namer(
    service: str | ServiceName | None,
) -> Callable[[requests.PreparedRequest], str | None]:
    """Turn the ``service=`` option into ``(request) -> name``; ``None`` means "not guarded".

    Only the default namer answers ``None``, for a URL without a host: requests then
    raises its own error for it, which says what is wrong.
    """
    return shared_namer(service, _authority)
