"""A Celery task that publishes to RabbitMQ through a circuit breaker (CircuitBreakerTask).

Run a worker against a local Redis (broker, results and shared circuit state):

    uv run celery -A examples.celery_app worker --loglevel=info
    uv run python -c "from examples.celery_app import publish_to_rabbit as t; print(t.delay({}).get(30))"

Environment: CELERY_BROKER_URL (default redis://127.0.0.1:6379/0), CELERY_RESULT_BACKEND
(default redis://127.0.0.1:6379/1), TNM_CIRCUIT_REDIS_URL (default redis://127.0.0.1:6379/2),
TNM_CIRCUIT_NAMESPACE (default ``myapp:circuit``, as in the FastAPI example).
Set SIMULATE_RABBITMQ_DOWN_FILE=/some/path and create that file to make publishing fail (delete
it to bring "RabbitMQ" back): after three failures the circuit opens, for every worker process,
and tasks wait (retried without running) until a trial call succeeds.

The task body holds no hand-written ``is_available`` / ``record_*`` calls: the base
class does both, and while the circuit is open the task waits without running its body.
The breaker lives in Redis, because a Celery deployment is many processes.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_celery import CircuitBreakerTask, setup

app = Celery(
    "myapp",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1"),
)

breaker = CircuitBreaker(
    "redis",
    redis_url=os.environ.get("TNM_CIRCUIT_REDIS_URL", "redis://127.0.0.1:6379/2"),
    namespace=os.environ.get("TNM_CIRCUIT_NAMESPACE", "myapp:circuit"),
    service_policies={"rabbitmq": ServicePolicy(window_seconds=60, max_failures=3, open_seconds=2)},
)
setup(app, breaker)


def publish(payload: dict[str, Any]) -> None:
    """Stands in for a RabbitMQ publish."""
    flag = os.environ.get("SIMULATE_RABBITMQ_DOWN_FILE")
    if flag and os.path.exists(flag):
        raise ConnectionError("rabbitmq: connection refused")


@app.task(base=CircuitBreakerTask, circuit_service="rabbitmq", bind=True, max_retries=10)
def publish_to_rabbit(self: CircuitBreakerTask, payload: dict[str, Any]) -> dict[str, str]:
    publish(payload)
    return {"status": "ok", "pid": str(os.getpid())}
