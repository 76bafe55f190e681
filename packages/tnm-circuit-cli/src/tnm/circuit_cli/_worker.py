"""A worker loop for queues: wait out an open circuit, never drop an item."""

from __future__ import annotations

import enum
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Generic, TypeVar

from tnm.circuit import CircuitBreaker, CircuitError

__all__ = ["WorkerExit", "WorkerResult", "run_worker"]

logger = logging.getLogger("tnm.circuit")

T = TypeVar("T")


class WorkerExit(enum.IntEnum):
    """Exit codes of ``run_worker`` (use with ``sys.exit``/``ctx.exit``)."""

    DONE = 0  # the source ran dry (stop_when_empty) or max_items were handled
    INTERRUPTED = 130  # SIGINT: stopped after the current item (128 + 2)
    TERMINATED = 143  # SIGTERM: stopped after the current item (128 + 15)


@dataclass
class WorkerResult(Generic[T]):
    """What ``run_worker`` did: why it stopped, and how many items it processed, saw fail
    and requeued."""

    exit_code: WorkerExit
    processed: int = 0
    failed: int = 0
    requeued: int = 0


def _requeue_on_error(item: object, exc: BaseException) -> bool:
    return True


def run_worker(
    breaker: CircuitBreaker,
    service: str,
    source: Callable[[], T | None],
    process: Callable[[T], object],
    requeue: Callable[[T], object],
    *,
    on_error: Callable[[T, BaseException], bool] = _requeue_on_error,
    stop_when_empty: bool = False,
    idle_seconds: float = 1.0,
    max_items: int | None = None,
    handle_signals: bool = True,
    sleep: Callable[[float], object] | None = None,
) -> WorkerResult[T]:
    """Take items from ``source`` and ``process`` each through ``service``'s circuit.

    - While the circuit is open the loop sleeps until its ``retry_after`` (never a
      tight poll) and takes no item; while half-open with its trial running elsewhere, at
      most the policy's ``open_seconds``, never under a second
      (``ServicePolicy.wait_before_retry``).
    - An item rejected because the circuit opened meanwhile is handed to ``requeue``,
      never dropped. An item whose processing raised goes to ``on_error(item, exc)``;
      if that returns True (the default) the item is requeued too.
    - ``source()`` returns ``None`` when it has nothing: the loop stops if
      ``stop_when_empty``, else waits ``idle_seconds``.
    - SIGINT / SIGTERM stop the loop after the current item (handlers are installed
      only in the main thread and restored afterwards). The result's ``exit_code``
      says why the loop ended.
    - ``sleep`` replaces the waits (tests pass one that moves a ManualClock); by
      default a wait ends early when a stop signal arrives.
    """
    stop = threading.Event()
    stopped_by: list[WorkerExit] = []
    result: WorkerResult[T] = WorkerResult(WorkerExit.DONE)

    def wait(seconds: float) -> None:
        if sleep is not None:
            sleep(seconds)
        else:
            stop.wait(max(0.01, seconds))

    with _stop_on_signals(stop, stopped_by, enabled=handle_signals):
        while not stop.is_set():
            if max_items is not None and result.processed + result.failed >= max_items:
                break
            if not breaker.is_available(service):
                snapshot = breaker.state(service)
                wait(
                    breaker.policy_for(service).wait_before_retry(snapshot.retry_after, snapshot.state)
                    or idle_seconds
                )
                continue
            item = source()
            if item is None:
                if stop_when_empty:
                    break
                wait(idle_seconds)
                continue
            try:
                breaker.execute(service, process, item)
            except CircuitError as exc:
                requeue(item)
                result.requeued += 1
                refused = getattr(exc, "service", None) or service  # (whose circuit refused)
                retry_after = breaker.policy_for(refused).wait_before_retry(
                    getattr(exc, "retry_after", None), getattr(exc, "state", "open")
                )
                wait(retry_after if retry_after is not None else idle_seconds)
            except Exception as exc:
                result.failed += 1
                logger.warning("processing an item for %r failed: %s", service, exc)
                if on_error(item, exc):
                    requeue(item)
                    result.requeued += 1
            else:
                result.processed += 1
    if stopped_by:
        result.exit_code = stopped_by[0]
    return result


@contextmanager
def _stop_on_signals(stop: threading.Event, stopped_by: list[WorkerExit], *, enabled: bool) -> Iterator[None]:
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    codes = {signal.SIGINT: WorkerExit.INTERRUPTED, signal.SIGTERM: WorkerExit.TERMINATED}

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stopped_by:
            stopped_by.append(codes[signal.Signals(signum)])
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in codes}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
