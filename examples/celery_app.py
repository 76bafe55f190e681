"""A Celery task that publishes to RabbitMQ through a circuit breaker (CircuitBreakerTask).

Needs a Redis on 127.0.0.1:6379: database 0 is the broker, 1 the results and 2 the shared
circuit state (change them with the variables below). Run a worker, then send a task:

    uv run celery -A examples.celery_app worker --loglevel=info
    uv run python -c "from examples.celery_app import publish_to_rabbit as t; print(t.delay({}).get(60))"

Environment: CELERY_BROKER_URL (default redis://127.0.0.1:6379/0), CELERY_RESULT_BACKEND
(default redis://127.0.0.1:6379/1), TNM_CIRCUIT_REDIS_URL (default redis://127.0.0.1:6379/2),
TNM_CIRCUIT_NAMESPACE (default ``myapp:circuit``, as in the FastAPI example).
Set SIMULATE_RABBITMQ_DOWN_FILE=/some/path and create that file to make publishing fail (delete
it to bring "RabbitMQ" back).

The pattern: ``autoretry_for=(ConnectionError,)`` with a backoff retries a failed publish,
and each of those failures counts for the circuit; after three, the circuit opens for every
worker process, and every task, new or retrying, then waits (retried after the circuit's
``retry_after``, without running its body) until a trial publish succeeds. The log shows
``Retry in 4s: ConnectionError(...)`` for a backoff and ``Retry in 2.3s: CircuitOpenError(...)``
for a wait; both draw on ``max_retries``.

The task body holds no hand-written ``is_available`` / ``record_*`` calls: the base
class does both. The breaker lives in Redis, because a Celery deployment is many processes.
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


@app.task(
    base=CircuitBreakerTask,
    circuit_service="rabbitmq",
    bind=True,
    autoretry_for=(ConnectionError,),  # the downstream's error: retried, and counted by the circuit
    retry_backoff=True,  # 1s, 2s, 4s... (with Celery's jitter) between publish attempts
    retry_backoff_max=30,
    max_retries=20,  # shared by the backoff retries and the waits while the circuit is open
)
def publish_to_rabbit(self: CircuitBreakerTask, payload: dict[str, Any]) -> dict[str, str]:
    publish(payload)
    return {"status": "ok", "pid": str(os.getpid())}
