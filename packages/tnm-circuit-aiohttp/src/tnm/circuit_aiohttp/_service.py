"""Which circuit a request goes through: its upstream's ``host:port`` unless told otherwise."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from tnm.circuit.http import service_namer as shared_namer
from tnm.circuit.http import upstream_name

__all__ = ["ServiceName", "authority", "service_namer"]

ServiceName = Callable[[aiohttp.ClientRequest], str]
"""What ``service=`` accepts besides a fixed name: ``(request) -> service name``."""


def authority(request: aiohttp.ClientRequest) -> str:
    """The request's upstream as ``host:port``, the port always given (``api.example.com:443``).

    The name never holds the URL's user name or password. An IPv6 host is bracketed
    (``[::1]:8080``). This is the middleware's default service name; call it from your own
    ``service=`` function to keep it for some requests.
    """
    return _authority(request) or ""


def _authority(request: aiohttp.ClientRequest) -> str | None:
    """``authority``, or ``None`` for a URL without a host."""
    url = request.url
    return upstream_name(url.scheme, url.host, url.port)  # yarl fills in the scheme's default port


def service_namer(service: str | ServiceName | None) -> Callable[[aiohttp.ClientRequest], str | None]:
    """Turn the ``service=`` option into ``(request) -> name``; ``None`` means "not guarded"
    (a URL without a host: the client then raises its own error for it)."""
    return shared_namer(service, _authority)
