"""tnm.circuit_requests: a circuit per upstream for every requests Session, as one adapter.

session = requests.Session()
adapter = CircuitBreakerAdapter(breaker)
session.mount("https://", adapter)
session.mount("http://", adapter)

Each upstream (``host:port``) gets its own circuit. While it is open, requests to it raise
``CircuitOpenRequestError`` (a ``requests.ConnectionError`` and a
``tnm.circuit.CircuitOpenError``) without being sent.
"""

from tnm.circuit.http import DEFAULT_FAILURE_STATUSES

from ._adapter import CircuitBreakerAdapter
from ._errors import CircuitOpenRequestError
from ._service import ServiceName, authority

CircuitBreakerAdapter.__module__ = __name__
CircuitOpenRequestError.__module__ = __name__
authority.__module__ = __name__

__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "CircuitBreakerAdapter",
    "CircuitOpenRequestError",
    "ServiceName",
    "authority",
]
