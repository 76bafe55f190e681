"""tnm.circuit_aiohttp: a circuit per upstream for every aiohttp ClientSession, as one middleware.

session = aiohttp.ClientSession(middlewares=[CircuitBreakerMiddleware(breaker)])

Each upstream (``host:port``) gets its own circuit. While it is open, requests to it raise
``CircuitOpenClientError`` (an ``aiohttp.ClientConnectionError`` and a
``tnm.circuit.CircuitOpenError``) without being sent. Needs aiohttp 3.12 or later (client
middlewares).
"""

from tnm.circuit.http import DEFAULT_FAILURE_STATUSES

from ._errors import CircuitOpenClientError
from ._middleware import CircuitBreakerMiddleware
from ._service import ServiceName, authority

CircuitBreakerMiddleware.__module__ = __name__
CircuitOpenClientError.__module__ = __name__
authority.__module__ = __name__

__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "CircuitBreakerMiddleware",
    "CircuitOpenClientError",
    "ServiceName",
    "authority",
]
