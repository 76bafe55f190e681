"""Which circuit a request goes through: its upstream's ``host:port`` unless told otherwise."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from tnm.circuit import InvalidConfigError, InvalidConfigTypeError

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
    host = url.host
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    port = url.port  # yarl fills in the scheme's default port
    return host if port is None else f"{host}:{port}"


def service_namer(service: str | ServiceName | None) -> Callable[[aiohttp.ClientRequest], str | None]:
    """Turn the ``service=`` option into ``(request) -> name``; ``None`` means "not guarded"."""
    if service is None:
        return _authority
    if isinstance(service, str):
        if not service:
            raise InvalidConfigError("service", "must not be empty")
        return lambda request: service
    if callable(service):
        return service
    raise InvalidConfigTypeError("service", f"must be a str or a callable (request) -> str, got {service!r}")
