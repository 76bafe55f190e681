"""tnm.circuit_celery: Celery tasks that wait out an open circuit.

app = Celery(...)
setup(app, breaker)

@app.task(base=CircuitBreakerTask, circuit_service="rabbitmq", bind=True, max_retries=5)
def publish(self, payload): ...
"""

from ._task import APP_ATTRIBUTE, CircuitBreakerTask, setup

__all__ = ["APP_ATTRIBUTE", "CircuitBreakerTask", "setup"]

# Exported classes and functions report this package (as httpx's do), not the private module.
for _export in (CircuitBreakerTask, setup):
    _export.__module__ = __name__
del _export
