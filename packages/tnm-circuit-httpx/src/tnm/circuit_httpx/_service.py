"""Which circuit a request goes through: its upstream's ``host:port`` unless told otherwise."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tnm.circuit import InvalidConfigTypeError

__all__ = ["ServiceName", "authority", "service_namer"]

ServiceName = Callable[[httpx.Request], str]
"""What ``service=`` accepts besides a fixed name: ``(request) -> service name``."""

# httpx leaves these schemes' default ports out of ``URL.port``; a name always carries one.
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def authority(request: httpx.Request) -> str:
    """The request's upstream as ``host:port``, the port always given (``api.example.com:443``).

    The name never holds the URL's user name or password. An IPv6 host is bracketed
    (``[::1]:8080``). This is the transports' default service name; call it from your
    own ``service=`` function to keep it for some requests.
    """
    return _authority(request) or ""


def _authority(request: httpx.Request) -> str | None:
    """``authority``, or ``None`` for a URL without a host."""
    url = request.url
    host = url.host
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    port = url.port
    if port is None:
        port = _DEFAULT_PORTS.get(url.scheme)
        if port is None:
            return host
    return f"{host}:{port}"


def service_namer(service: str | ServiceName | None) -> Callable[[httpx.Request], str | None]:
    """Turn the ``service=`` option into ``(request) -> name``; ``None`` means "not guarded".

    Only the default namer answers ``None``, for a request without a host: the inner
    transport then raises httpx's own error for it, which says what is wrong.
    """
    if service is None:
        return _authority
    if isinstance(service, str):
        # The name is checked by the breaker on first use, like any other.
        return lambda request: service
    if callable(service):
        return service
    raise InvalidConfigTypeError("service", f"must be a str or a callable (request) -> str, got {service!r}")
