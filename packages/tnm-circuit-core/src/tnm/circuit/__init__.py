"""tnm.circuit: a circuit breaker per downstream service, for sync and async Python.

from tnm.circuit import CircuitBreaker, ServicePolicy

breaker = CircuitBreaker(default_policy=ServicePolicy(window_seconds=60, max_failures=5))

@breaker.protect("postgres")
def load(user_id): ...
"""

from .breaker import CircuitBreaker, get_breaker
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

__all__ = [
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
