"""``CircuitBreakerTask``: a Celery task that waits out an open circuit instead of failing."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from celery import Celery, Task
from celery.exceptions import Ignore, Reject, Retry

from tnm.circuit import CircuitBreaker, CircuitError, CircuitOpenError, ReturnValuePolicy

__all__ = ["APP_ATTRIBUTE", "CircuitBreakerTask", "setup"]

APP_ATTRIBUTE = "tnm_circuit_breaker"
"""The attribute of the Celery app where ``setup`` keeps the breaker."""

# Celery's own control flow is never a failure of the downstream service.
_CELERY_FLOW = (Retry, Ignore, Reject)


def setup(app: Celery, breaker: CircuitBreaker) -> None:
    """Make ``breaker`` the breaker of every ``CircuitBreakerTask`` of ``app``
    (unless a task sets its own ``circuit_breaker``)."""
    setattr(app, APP_ATTRIBUTE, breaker)


class CircuitBreakerTask(Task):  # type: ignore[misc]  # celery ships no type hints
    """Base class for tasks that call one downstream service.

    ``@app.task(base=CircuitBreakerTask, circuit_service="rabbitmq", bind=True)``

    Before the body runs, the service's circuit decides: if it rejects the call
    (open, or half-open with every trial permit taken) the task is retried after the
    circuit's ``retry_after`` plus a little jitter, without running the body. While
    half-open, that is at most the policy's ``open_seconds`` (never under a second): the
    running trial usually ends long before its permit's deadline (``trial_timeout_seconds``).
    Otherwise the body runs under the breaker: its exceptions and return values are
    counted with the service's policy (narrowed by ``circuit_ignore_exceptions`` /
    ``circuit_on_exceptions`` / ``circuit_on_retval_policy``). A ``Retry`` carrying the
    downstream's error (``autoretry_for``, or ``self.retry(exc=error)`` in the body) counts
    that error under the same rules, then goes on to Celery unchanged; ``Ignore``,
    ``Reject``, a ``self.retry()`` without ``exc`` and the circuit's own waits never count.

    Options (task options, so class attributes):

    - ``circuit_service``: the service name (required to protect the task);
    - ``circuit_breaker``: the breaker, else the app's (``tnm.circuit_celery.setup``);
    - ``circuit_waits_count_as_retries`` (default True): each wait is a Celery retry,
      counted against ``max_retries``; when they run out the task fails with
      ``CircuitOpenError``. With False, a wait re-sends the task with its retry count
      unchanged, so it waits as long as the circuit stays open (bound it with ``expires``);
    - ``circuit_retry_jitter`` (default 0.2): up to this fraction of ``retry_after``
      (at least half a second) is added at random to each wait.

    A task instance is shared by every request: nothing per request is kept on ``self``.
    """

    abstract = True
    circuit_service: ClassVar[str | None] = None
    circuit_breaker: ClassVar[CircuitBreaker | None] = None
    circuit_ignore_exceptions: ClassVar[Iterable[type[BaseException] | Callable[[BaseException], bool]]] = ()
    circuit_on_exceptions: ClassVar[
        Iterable[type[BaseException] | Callable[[BaseException], bool]] | None
    ] = None
    circuit_on_retval_policy: ClassVar[ReturnValuePolicy | None] = None
    circuit_waits_count_as_retries: ClassVar[bool] = True
    circuit_retry_jitter: ClassVar[float] = 0.2

    def get_circuit_breaker(self) -> CircuitBreaker:
        breaker = self.circuit_breaker or getattr(self.app, APP_ATTRIBUTE, None)
        if not isinstance(breaker, CircuitBreaker):
            raise CircuitError(
                f"task {self.name!r} has no circuit breaker: pass circuit_breaker= in its options "
                "or call tnm.circuit_celery.setup(app, breaker)"
            )
        return breaker

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        service = self.circuit_service
        if service is None:
            return super().__call__(*args, **kwargs)
        breaker = self.get_circuit_breaker()
        policy = breaker.policy_for(service)
        ignore = (*(self.circuit_ignore_exceptions or policy.ignore_exceptions), *_CELERY_FLOW)
        # In a worker the tracer has pushed this request already: run the body directly
        # (as Celery's own tracer would) so that self.request stays the real one.
        body = self.run if self.request_stack.top is not None else super().__call__
        carried: list[Retry] = []  # per call: a task instance is shared by every request
        try:
            return breaker.execute(
                service,
                _unwrap_retry(body, carried),
                *args,
                ignore_exceptions=ignore,
                on_exceptions=self.circuit_on_exceptions,
                on_retval_policy=self.circuit_on_retval_policy,
                fallback=lambda *_a, **_k: self._wait_for_circuit(breaker, service),
                **kwargs,
            )
        except Exception as exc:
            if carried and exc is carried[0].exc:
                _restore(exc, carried[0])
                raise carried[0] from None
            raise

    def _wait_for_circuit(self, breaker: CircuitBreaker, service: str) -> Any:
        """The circuit refused the call: retry later without running the body."""
        error = breaker.open_error(service)
        # (half-open with its trial running: at most the open time, not the trial's deadline)
        retry_after = breaker.policy_for(service).wait_before_retry(
            getattr(error, "retry_after", None), getattr(error, "state", "open")
        )
        if retry_after is None:  # held open by an operator: no deadline known
            countdown = float(self.default_retry_delay)
        else:
            spread = max(0.5, retry_after * self.circuit_retry_jitter)
            # Rounded up to a tenth of a second: never before the circuit lets a trial
            # through, and Celery's "Retry in 2.3s" stays readable.
            countdown = math.ceil((retry_after + random.uniform(0.0, spread)) * 10) / 10
        if isinstance(error, CircuitOpenError) and not self.circuit_waits_count_as_retries:
            request = self.request
            if request.called_directly:
                raise error
            signature = self.signature_from_request(request, countdown=countdown, retries=request.retries)
            signature.apply_async()
            raise Retry(exc=error, when=countdown, sig=signature)
        raise self.retry(exc=error, countdown=countdown)


_SAVED = "_tnm_circuit_saved"


def _unwrap_retry(body: Callable[..., Any], carried: list[Retry]) -> Callable[..., Any]:
    """``body``, raising the downstream error a ``Retry`` carries so the breaker counts it
    under the task's rules (the ``Retry`` goes on to Celery afterwards, see ``__call__``)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except Retry as retry:
            exc = retry.exc
            if not isinstance(exc, Exception) or isinstance(exc, CircuitError):
                raise
            carried.append(retry)
            # Raising it changes what the error links to: keep the originals to put back.
            saved = (exc.__traceback__, exc.__context__, exc.__cause__, exc.__suppress_context__)
            setattr(retry, _SAVED, saved)
            raise exc from None

    return run


def _restore(exc: BaseException, retry: Retry) -> None:
    """Put back what raising ``exc`` inside ``_unwrap_retry`` changed."""
    tb, context, cause, suppress = getattr(retry, _SAVED)
    delattr(retry, _SAVED)
    exc.__traceback__, exc.__context__, exc.__cause__ = tb, context, cause
    exc.__suppress_context__ = suppress
