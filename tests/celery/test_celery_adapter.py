"""CircuitBreakerTask on a real Celery worker and a real broker (the session's redis-server)."""

from __future__ import annotations

import gc
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from tnm.circuit import (
    CircuitBreaker,
    CircuitError,
    CircuitEvent,
    CircuitOpenError,
    CircuitState,
    EventKind,
    ServicePolicy,
)
from tnm.circuit.testing import capture_events
from tnm.circuit_celery import CircuitBreakerTask, setup

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30

# Celery's AsyncResult.__del__ unsubscribes from the result backend: a result that the
# garbage collector reaches after its app closed raises there, and Celery's result
# consumer leaves its pub/sub socket to the collector. Both are Celery's own cleanup:
# the fixtures collect garbage while the app is still open, and these tests ignore what
# is left. Our own connections are checked for leaks by every other test module.
pytestmark = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning"
)


def opened(events: list[CircuitEvent]) -> bool:
    return any(e.kind is EventKind.STATE_CHANGE and e.state is CircuitState.OPEN for e in events)


class Recorder:
    """What task bodies did (the threads pool shares this process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: list[str] = []
        self.fail = False

    def ran(self, name: str) -> None:
        with self.lock:
            self.runs.append(name)


_apps = itertools.count()


def task(app: Celery, short: str) -> Any:
    return app.tasks[f"{app.main}.{short}"]


def make_app(broker: str, backend: str, breaker: CircuitBreaker, rec: Recorder) -> Celery:
    # A unique app (and task names) per test: Celery warns when a name is registered twice.
    app = Celery(f"tnm-test-{next(_apps)}", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_retry_delay=0.2,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    setup(app, breaker)

    @app.task(
        base=CircuitBreakerTask,
        circuit_service="rabbitmq",
        bind=True,
        max_retries=20,
        name=f"{app.main}.publish",
    )
    def publish(self: Any, n: int) -> int:
        rec.ran(f"publish-{n}")
        if rec.fail:
            raise ConnectionError("broker down")
        return n

    @app.task(
        base=CircuitBreakerTask,
        circuit_service="rabbitmq",
        bind=True,
        max_retries=1,
        name=f"{app.main}.short",
        default_retry_delay=0.2,
    )
    def short(self: Any) -> str:
        rec.ran("short")
        return "ran"

    @app.task(
        base=CircuitBreakerTask,
        circuit_service="rabbitmq",
        bind=True,
        max_retries=3,
        name=f"{app.main}.self_retry",
    )
    def self_retry(self: Any) -> str:
        rec.ran("self_retry")
        if self.request.retries == 0:
            raise self.retry(countdown=0.1)
        return "second try"

    @app.task(
        base=CircuitBreakerTask, circuit_service="rabbitmq", bind=True, name=f"{app.main}.autoretry",
        autoretry_for=(TimeoutError,), retry_kwargs={"max_retries": 2, "countdown": 0.1},
    )  # fmt: skip
    def autoretry(self: Any) -> str:
        rec.ran("autoretry")
        if self.request.retries < 2:
            raise TimeoutError("flaky")
        return "third try"

    @app.task(
        base=CircuitBreakerTask, circuit_service="rabbitmq", bind=True, name=f"{app.main}.autoretry_down",
        autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 50, "countdown": 0.1},
        default_retry_delay=0.2,
    )  # fmt: skip
    def autoretry_down(self: Any, n: int) -> int:
        rec.ran(f"autoretry_down-{n}")
        if rec.fail:
            raise ConnectionError("broker down")
        return n

    @app.task(
        base=CircuitBreakerTask, circuit_service="rabbitmq", bind=True, name=f"{app.main}.retry_exc",
        max_retries=50,
    )  # fmt: skip
    def retry_exc(self: Any, n: int) -> int:
        rec.ran(f"retry_exc-{n}")
        if rec.fail:
            raise self.retry(exc=ConnectionError("broker down"), countdown=0.1)
        return n

    @app.task(
        base=CircuitBreakerTask,
        circuit_service="rabbitmq",
        name=f"{app.main}.ignored",
        circuit_ignore_exceptions=[KeyError],
    )
    def ignored() -> None:
        raise KeyError("not the broker's fault")

    @app.task(
        base=CircuitBreakerTask,
        circuit_service="rabbitmq",
        bind=True,
        max_retries=0,
        name=f"{app.main}.patient",
        default_retry_delay=0.2,
        circuit_waits_count_as_retries=False,
    )
    def patient(self: Any) -> int:
        rec.ran("patient")
        return int(self.request.retries)

    @app.task(bind=True, max_retries=3, name=f"{app.main}.manual")
    def manual(self: Any) -> str:
        # The seed's manual pattern on a plain task class.
        if not breaker.is_available("rabbitmq"):
            raise self.retry(countdown=0.2, exc=Exception("RabbitMQ circuit open"))
        try:
            if rec.fail:
                raise ConnectionError("down")
        except Exception as exc:
            breaker.record_failure("rabbitmq", str(exc))
            raise
        breaker.record_success("rabbitmq")
        return "ok"

    return app


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def breaker() -> CircuitBreaker:
    return CircuitBreaker(
        service_policies={"rabbitmq": ServicePolicy(window_seconds=60, max_failures=3, open_seconds=0.5)}
    )


@pytest.fixture
def worker_app(redis_server: Any, redis_url: str, breaker: CircuitBreaker, rec: Recorder) -> Iterator[Celery]:
    base = redis_url.rsplit("/", 1)[0]
    app = make_app(f"{base}/1", f"{base}/2", breaker, rec)
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=10):
        yield app
        gc.collect()  # results left in reference cycles unsubscribe while the backend is up
    gc.collect()
    app.close()


class TestOnAWorker:
    def test_open_circuit_waits_then_runs(
        self, worker_app: Celery, breaker: CircuitBreaker, rec: Recorder
    ) -> None:
        """While open, the task is retried later without running its body; then it succeeds."""
        for _ in range(3):
            breaker.record_failure("rabbitmq", "down")
        assert breaker.state("rabbitmq").state is CircuitState.OPEN
        result = task(worker_app, "publish").delay(1)
        assert result.get(timeout=TIMEOUT) == 1
        assert rec.runs == ["publish-1"]  # the body ran once, after the circuit let it through
        assert breaker.state("rabbitmq").state is CircuitState.CLOSED

    def test_a_task_rejected_while_the_trial_runs_looks_again_after_the_open_time(
        self, worker_app: Celery, breaker: CircuitBreaker, rec: Recorder, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Half-open, its one trial running (a guard's block here): a task rejected meanwhile is
        retried after about the open time (0.5 s here, at least 1 s, plus jitter), not at the trial
        permit's deadline (30 s): the trial's outcome usually comes long before that."""
        for _ in range(3):
            breaker.record_failure("rabbitmq", "down")
        wait_until(lambda: breaker.state("rabbitmq").state is CircuitState.HALF_OPEN)
        with caplog.at_level("INFO", logger="celery.app.trace"):
            with breaker.guard("rabbitmq"):  # takes the trial permit
                result = task(worker_app, "publish").delay(1)
                wait_until(lambda: result.state == "RETRY")
                assert breaker.state("rabbitmq").state is CircuitState.HALF_OPEN
            # the block ended cleanly: the trial succeeded and closed the circuit
            assert result.get(timeout=TIMEOUT) == 1
        retries = [r.getMessage() for r in caplog.records if "Retry in" in r.getMessage()]
        assert retries  # (another look may have come before the block ended, on a slow machine)
        for message in retries:
            countdown = float(message.split("Retry in ", 1)[1].split("s", 1)[0])
            assert countdown <= 1.0 + 0.5 + 0.1, message  # the floor of 1 s, jitter, rounding up
        assert rec.runs == ["publish-1"]
        assert breaker.state("rabbitmq").state is CircuitState.CLOSED

    def test_body_failures_open_the_circuit_for_other_tasks(
        self, worker_app: Celery, breaker: CircuitBreaker, rec: Recorder
    ) -> None:
        """Failing bodies are counted; once open, other tasks wait instead of running."""
        rec.fail = True
        with capture_events(breaker) as events:
            failing = [task(worker_app, "publish").apply_async((n,), retry=False) for n in range(3)]
            for result in failing:
                with pytest.raises(ConnectionError):
                    result.get(timeout=TIMEOUT)
        assert opened(events)
        before = list(rec.runs)
        rec.fail = False
        assert task(worker_app, "short").delay().get(timeout=TIMEOUT) == "ran"
        assert rec.runs[len(before) :] == ["short"]

    def test_retries_exhausted_ends_in_circuit_open_error(
        self, worker_app: Celery, breaker: CircuitBreaker, rec: Recorder
    ) -> None:
        """With the circuit held open and max_retries=1, the task fails with CircuitOpenError."""
        breaker.force_open("rabbitmq", "maintenance")
        result = task(worker_app, "short").delay()
        with pytest.raises(CircuitOpenError) as info:
            result.get(timeout=TIMEOUT)
        assert info.value.service == "rabbitmq"
        assert result.state == "FAILURE"
        assert "short" not in rec.runs

    def test_waits_that_do_not_count(
        self, worker_app: Celery, breaker: CircuitBreaker, rec: Recorder
    ) -> None:
        """With circuit_waits_count_as_retries=False a task with max_retries=0 waits as long as
        the circuit stays open, then runs with its retry count untouched."""
        breaker.force_open("rabbitmq", "maintenance")
        result = task(worker_app, "patient").delay()
        deadline = time.monotonic() + TIMEOUT
        while result.state != "RETRY":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # Counted, the first wait would have failed the task (max_retries=0).
        assert "patient" not in rec.runs
        breaker.reset("rabbitmq")
        assert result.get(timeout=TIMEOUT) == 0

    def test_celery_retries_are_not_failures(
        self, worker_app: Celery, breaker: CircuitBreaker, rec: Recorder
    ) -> None:
        """self.retry(), autoretry_for and ignored exceptions never count as failures."""
        assert task(worker_app, "self_retry").delay().get(timeout=TIMEOUT) == "second try"
        assert task(worker_app, "autoretry").delay().get(timeout=TIMEOUT) == "third try"
        with pytest.raises(KeyError):
            task(worker_app, "ignored").delay().get(timeout=TIMEOUT)
        assert breaker.state("rabbitmq").failures == 0

    def test_manual_seed_pattern(self, worker_app: Celery, breaker: CircuitBreaker, rec: Recorder) -> None:
        """is_available + record_failure/record_success inside a plain task keep working."""
        rec.fail = True
        with capture_events(breaker) as events:
            for _ in range(3):
                with pytest.raises(ConnectionError):
                    task(worker_app, "manual").apply_async(retry=False).get(timeout=TIMEOUT)
        assert opened(events)
        rec.fail = False
        assert task(worker_app, "manual").delay().get(timeout=TIMEOUT) == "ok"


def wait_until(condition: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class TestRetriesCarryingTheDownstreamError:
    @pytest.mark.parametrize("short", ["autoretry_down", "retry_exc"])
    def test_carried_errors_open_the_circuit_then_tasks_wait_and_succeed(
        self, worker_app: Celery, breaker: CircuitBreaker, rec: Recorder, short: str
    ) -> None:
        """The error an autoretry_for (or self.retry(exc=...)) Retry carries counts: the circuit
        opens, retries then wait without running the body, and every task succeeds once back."""
        rec.fail = True
        with capture_events(breaker) as events:
            results = [task(worker_app, short).delay(n) for n in range(5)]
            wait_until(lambda: opened(events))
            runs_when_open = len(rec.runs)
            rec.fail = False
            assert [r.get(timeout=TIMEOUT) for r in results] == list(range(5))
        assert breaker.state("rabbitmq").state is CircuitState.CLOSED
        # Counted failures stopped the bodies: at most the worker's 4 threads' in-flight
        # runs after the third, then one run per task to finish (and one trial).
        assert len(rec.runs) <= runs_when_open + 5 + 1
        assert all(r.state == "SUCCESS" for r in results)

    def test_circuit_waits_never_count(
        self, worker_app: Celery, breaker: CircuitBreaker, rec: Recorder
    ) -> None:
        """Waiting out a held-open circuit records no failure, whatever the task's autoretry_for."""
        breaker.force_open("rabbitmq", "maintenance")
        result = task(worker_app, "autoretry_down").delay(1)
        wait_until(lambda: result.state == "RETRY")
        breaker.reset("rabbitmq")
        assert result.get(timeout=TIMEOUT) == 1
        assert breaker.state("rabbitmq").failures == 0
        assert rec.runs == ["autoretry_down-1"]

    def test_wait_countdown_is_rounded(
        self, worker_app: Celery, breaker: CircuitBreaker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A wait's countdown is rounded up to a tenth of a second (Celery logs "Retry in 0.7s")."""
        for _ in range(3):
            breaker.record_failure("rabbitmq", "down")
        with caplog.at_level("INFO", logger="celery.app.trace"):
            assert task(worker_app, "publish").delay(1).get(timeout=TIMEOUT) == 1
        retries = [r.getMessage() for r in caplog.records if "Retry in" in r.getMessage()]
        assert retries
        for message in retries:
            seconds = message.split("Retry in ", 1)[1].split("s", 1)[0]
            assert len(seconds.split(".", 1)[-1]) <= 1, message


def test_missing_breaker_is_a_clear_error() -> None:
    """A CircuitBreakerTask with no breaker anywhere fails with a CircuitError naming the fix."""
    app = Celery("nobreaker", set_as_current=False)

    @app.task(base=CircuitBreakerTask, circuit_service="svc", name="orphan")
    def orphan() -> None: ...

    with pytest.raises(CircuitError, match="setup"):
        orphan()


def _rabbitmq_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _rabbitmq_up(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_on_rabbitmq_broker(redis_url: str, breaker: CircuitBreaker, rec: Recorder) -> None:
    """The same wait-then-run behaviour with RabbitMQ as the broker."""
    base = redis_url.rsplit("/", 1)[0]
    app = make_app("amqp://guest:guest@127.0.0.1:5672//", f"{base}/2", breaker, rec)
    app.conf.task_default_queue = f"tnm-test-{os.getpid()}"
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        for _ in range(3):
            breaker.record_failure("rabbitmq", "down")
        assert task(app, "publish").delay(7).get(timeout=TIMEOUT) == 7
        assert rec.runs == ["publish-7"]
        gc.collect()
    app.close()


@pytest.mark.slow
def test_prefork_workers_share_the_circuit(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/celery_app.py on a prefork worker (2 processes, forked after the breaker exists):
    the publish errors its autoretry retries open the shared circuit, every task then waits
    without running, and all succeed once the service is back."""
    base = redis_url.rsplit("/", 1)[0]
    down = tmp_path / "rabbitmq-down"
    down.touch()
    settings = {
        "CELERY_BROKER_URL": f"{base}/3",
        "CELERY_RESULT_BACKEND": f"{base}/4",
        "TNM_CIRCUIT_REDIS_URL": f"{base}/5",
        "TNM_CIRCUIT_NAMESPACE": "prefork-test",
        "SIMULATE_RABBITMQ_DOWN_FILE": str(down),
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    celery_bin = str(Path(sys.executable).parent / "celery")
    worker = subprocess.Popen(
        [celery_bin, "-A", "examples.celery_app", "worker", "-P", "prefork", "-c", "2", "--loglevel=warning",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import importlib

    import examples.celery_app as example

    example = importlib.reload(example)  # picks up this test's settings
    try:
        example.breaker.initialize()
        results = [example.publish_to_rabbit.delay({"n": n}) for n in range(5)]
        deadline = time.monotonic() + TIMEOUT
        while example.breaker.state("rabbitmq").state is not CircuitState.OPEN:
            assert time.monotonic() < deadline, "the autoretried errors never opened the circuit"
            time.sleep(0.05)
        assert all(r.state in ("PENDING", "RETRY") for r in results)  # none failed
        down.unlink()  # the service is back
        assert [r.get(timeout=TIMEOUT)["status"] for r in results] == ["ok"] * 5
        assert example.breaker.state("rabbitmq").state is CircuitState.CLOSED
    finally:
        gc.collect()
        example.app.close()
        example.breaker.close()
        worker.terminate()
        worker.wait(timeout=30)
