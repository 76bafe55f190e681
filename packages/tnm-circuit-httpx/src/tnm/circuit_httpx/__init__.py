"""tnm.circuit_httpx: a circuit per upstream for every httpx client, as one transport.

client = httpx.Client(transport=CircuitBreakerTransport(breaker))
client = httpx.AsyncClient(transport=AsyncCircuitBreakerTransport(breaker))

Each upstream (``host:port``) gets its own circuit. While it is open, requests to it
raise ``CircuitOpenRequestError`` (an ``httpx.TransportError`` and a
``tnm.circuit.CircuitOpenError``) without being sent.
"""

from tnm.circuit.http import DEFAULT_FAILURE_STATUSES

from ._async_transport import AsyncCircuitBreakerTransport
from ._errors import CircuitOpenRequestError
from ._service import ServiceName, authority
from ._transport import CircuitBreakerTransport

__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "AsyncCircuitBreakerTransport",
    "CircuitBreakerTransport",
    "CircuitOpenRequestError",
    "ServiceName",
    "authority",
]

# Exported classes and functions report this package (as httpx's do), not the private module.
for _export in (AsyncCircuitBreakerTransport, CircuitBreakerTransport, CircuitOpenRequestError, authority):
    _export.__module__ = __name__
del _export
