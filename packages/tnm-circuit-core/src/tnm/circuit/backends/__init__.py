"""State stores behind the breaker: ``local`` (in-process) and ``redis`` (shared)."""

from .base import Backend, CircuitHandle
from .local import LocalBackend

__all__ = ["Backend", "CircuitHandle", "LocalBackend"]
