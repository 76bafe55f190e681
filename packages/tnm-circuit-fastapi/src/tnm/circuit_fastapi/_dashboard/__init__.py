"""The live circuit dashboard: router, rendering, history and operator routes."""

from .router import circuit_dashboard_router

__all__ = ["circuit_dashboard_router"]
