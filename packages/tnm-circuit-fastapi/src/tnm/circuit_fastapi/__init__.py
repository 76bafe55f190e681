"""tnm.circuit_fastapi: the breaker in a FastAPI app.

breaker = CircuitBreaker(...)
app = FastAPI(lifespan=breaker_lifespan(breaker))
add_exception_handlers(app)          # or both at once: install(app, breaker)

@app.get("/search", dependencies=[Depends(require_available("elasticsearch"))])
async def search(q: str, breaker: BreakerDep): ...

app.include_router(circuit_dashboard_router(prefix="/circuits"))   # a live page of every circuit
"""

from ._dashboard import circuit_dashboard_router
from ._dependencies import BreakerDep, get_circuit_breaker, require_available
from ._handlers import add_exception_handlers, open_error_response
from ._install import install
from ._lifespan import STATE_KEY, breaker_lifespan
from ._status import circuit_status_router

__all__ = [
    "STATE_KEY",
    "BreakerDep",
    "add_exception_handlers",
    "breaker_lifespan",
    "circuit_dashboard_router",
    "circuit_status_router",
    "get_circuit_breaker",
    "install",
    "open_error_response",
    "require_available",
]

# Exported classes and functions report this package (as httpx's do), not the private module.
for _export in (
    add_exception_handlers,
    breaker_lifespan,
    circuit_dashboard_router,
    circuit_status_router,
    get_circuit_breaker,
    install,
    open_error_response,
    require_available,
):
    _export.__module__ = __name__
del _export
