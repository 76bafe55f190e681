"""tnm.circuit: a circuit breaker per downstream service, for sync and async Python.

from tnm.circuit import CircuitBreaker, ServicePolicy

breaker = CircuitBreaker(default_policy=ServicePolicy(window_seconds=60, max_failures=5))

@breaker.protect("postgres")
def load(user_id): ...

The breaker logs on the ``tnm.circuit`` logger and, as a library, configures no
output: configure logging in your app to see its lines (see the guide's Operations
page, docs/guide/operations.md).

Everything an application needs is importable from here. The public modules, each
exporting what its ``__all__`` names, are: ``breaker``, ``policies``, ``state``,
``events``, ``exceptions``, ``clock``, ``http`` (what the HTTP client adapters share),
``testing`` (helpers for your tests),
``metrics`` (with ``metrics.prometheus`` and ``metrics.otel``) and ``backends`` (with
``backends.base``, the protocols a backend implements, ``backends.local`` and
``backends.redis``). Modules whose name starts with an underscore, and names a module
does not export, are internal and may change in any release.
"""

import logging as _logging
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from .breaker import Admitted, Caller, CircuitBreaker, get_breaker
from .clock import Clock, SystemClock
from .events import CircuitEvent, EventKind, Listener
from .exceptions import (
    CircuitBackendError,
    CircuitError,
    CircuitOpenError,
    InvalidConfigError,
    InvalidConfigTypeError,
    ReturnValuePolicyError,
)
from .policies import ReturnValuePolicy, ServicePolicy
from .state import CircuitSnapshot, CircuitState

try:
    __version__ = _version("tnm-circuit-core")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
    __version__ = "0+unknown"

# The Python logging HOWTO's rule for libraries: a NullHandler on the library's top logger,
# so that an app that configured no logging gets no stray stderr lines from us.
_logging.getLogger("tnm.circuit").addHandler(_logging.NullHandler())

__all__ = [
    "__version__",
    "Admitted",
    "Caller",
    "CircuitBackendError",
    "CircuitBreaker",
    "CircuitError",
    "CircuitEvent",
    "CircuitOpenError",
    "CircuitSnapshot",
    "CircuitState",
    "Clock",
    "EventKind",
    "InvalidConfigError",
    "InvalidConfigTypeError",
    "Listener",
    "ReturnValuePolicy",
    "ReturnValuePolicyError",
    "ServicePolicy",
    "SystemClock",
    "get_breaker",
]
