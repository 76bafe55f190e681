"""What the rejected and failing paths leave out: work nobody reads, and the circuit's lock."""

from __future__ import annotations

import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy
from tnm.circuit.policies import RATE_BUCKETS
from tnm.circuit.state import CircuitModel
from tnm.circuit.testing import ManualClock

from ..counting_hooks import HookedCount


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom("down")


class CountingLock:
    """Stands in for a circuit's lock and counts how often it is taken."""

    def __init__(self) -> None:
        self.taken = 0

    def __enter__(self) -> None:
        self.taken += 1

    def __exit__(self, *exc: object) -> None:
        return None

    def acquire(self) -> bool:
        self.taken += 1
        return True

    def release(self) -> None:
        return None


class WaitedLock:
    """Stands in for a circuit's lock and tells when a thread has to wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waited_for = threading.Event()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> bool:
        if not self._lock.acquire(blocking=False):
            self.waited_for.set()
            self._lock.acquire()
        return True

    def release(self) -> None:
        self._lock.release()


def count_lock(breaker: CircuitBreaker, service: str) -> CountingLock:
    lock = CountingLock()
    breaker._circuit(service)._lock = lock  # type: ignore[attr-defined]
    return lock


def opened(clock: ManualClock, **policy: Any) -> tuple[CircuitBreaker, Callable[[], None]]:
    breaker = CircuitBreaker(clock=clock, default_policy=ServicePolicy(max_failures=3, **policy))
    call = breaker.protect("svc")(boom)
    for _ in range(3):
        with pytest.raises(Boom):
            call()
    return breaker, call


class TestRejection:
    def test_a_rejection_works_out_no_field(
        self, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Rejected calls whose error nobody reads build no last_failure, figures or message."""
        _breaker, call = opened(clock)
        calls: list[str] = []
        for name in ("failure_record", "figures", "retry_after"):
            original = getattr(CircuitModel, name)

            def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
                calls.append(_name)
                return _original(*args)

            monkeypatch.setattr(CircuitModel, name, spy)
        errors = []
        for _ in range(100):
            with pytest.raises(CircuitOpenError) as info:
                call()
            errors.append(info.value)
        assert calls == []
        assert errors[0].last_failure is not None
        assert calls == ["failure_record"]

    def test_a_rejection_takes_no_lock(self, clock: ManualClock) -> None:
        """A call rejected while the circuit is open takes neither the circuit's lock nor a permit."""
        breaker, call = opened(clock)
        lock = count_lock(breaker, "svc")
        for _ in range(10):
            with pytest.raises(CircuitOpenError):
                call()
            with pytest.raises(CircuitOpenError):
                breaker.execute("svc", boom)
        assert lock.taken == 0

    def test_fields_are_those_of_the_rejection(self, clock: ManualClock) -> None:
        """An error read later reports the circuit as it was when the call was rejected."""
        breaker, call = opened(clock, open_seconds=10)
        clock.advance(4)
        with pytest.raises(CircuitOpenError) as info:
            call()
        clock.advance(5)
        breaker.record_failure("svc", "later")
        error = info.value
        assert error.retry_after == pytest.approx(6.0)
        assert error.last_failure is not None
        assert error.last_failure["reason"] == "Boom: down"
        assert (error.state, error.opened_by, error.failures, error.max_failures) == (
            "open",
            "failures",
            3,
            3,
        )
        assert "3 failure(s)" in str(error)

    def test_a_deferred_error_pickles_with_every_field(self, clock: ManualClock) -> None:
        """The error pickles as its fields (never the circuit it came from)."""
        _breaker, call = opened(clock)
        with pytest.raises(CircuitOpenError) as info:
            call()
        copy = pickle.loads(pickle.dumps(info.value))
        assert copy.args == info.value.args
        assert len(copy.args) == 11
        assert str(copy) == str(info.value)

    def test_the_same_failure_reads_the_same_everywhere(self, clock: ManualClock) -> None:
        """A rejection's last_failure is the breaker's, ts included, whichever is read first."""
        breaker, call = opened(clock)
        with pytest.raises(CircuitOpenError) as first:
            call()
        clock.advance(1)
        with pytest.raises(CircuitOpenError) as second:
            call()
        assert second.value.last_failure == breaker.last_failure("svc") == first.value.last_failure


class SettableClock:
    """A clock a test sets, backwards too (another thread's time read before a roll)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1.7e9 + self.now


def rate_breaker(clock: ManualClock | SettableClock | None = None, **policy: Any) -> CircuitBreaker:
    fields: dict[str, Any] = {
        "window_seconds": 3600,
        "max_failures": None,
        "failure_rate_threshold": 0.5,
        "minimum_calls": 10**6,
    }
    fields.update(policy)
    if clock is None:
        return CircuitBreaker(default_policy=ServicePolicy(**fields))
    return CircuitBreaker(clock=clock, default_policy=ServicePolicy(**fields))


class TestFailure:
    @pytest.mark.parametrize(
        ("policy", "fixed_reason"),
        [({"max_failures": 10**6, "failure_rate_threshold": None}, True), ({}, False)],
        ids=["count", "rate"],
    )
    def test_a_failure_that_opens_nothing_takes_no_lock(
        self, clock: ManualClock, policy: dict[str, Any], fixed_reason: bool
    ) -> None:
        """Failures that leave the circuit closed take no lock (inside one bucket of a rate
        window), counted or metered, through protect, execute and (under a count trigger) a
        fixed failure_reason; the circuit has them all."""
        breaker = rate_breaker(clock, **policy)
        breaker.execute("svc", lambda: None)  # the rate window's first bucket starts
        lock = count_lock(breaker, "svc")  # (before protect: the failure path binds its lock)
        call = breaker.protect("svc")(boom)
        lock.taken = 0  # (protect's first wrapper makes the circuit's list of wrappers)
        metered: list[object] = []
        for round_ in range(2):  # the second round with a state-change listener (metrics)
            for _ in range(20):
                with pytest.raises(Boom):
                    call()
                with pytest.raises(Boom):
                    breaker.execute("svc", boom)
                if fixed_reason:
                    with pytest.raises(Boom):
                        breaker.execute("svc", boom, failure_reason="down")
            if round_ == 0:
                breaker.add_listener(metered.append, calls=False)
        assert lock.taken == 0
        snapshot = breaker.state("svc")
        assert snapshot.failures == (120 if fixed_reason else 80)
        if not fixed_reason:
            assert snapshot.calls == 81
        assert snapshot.last_failure is not None
        assert snapshot.last_failure["reason"] == ("down" if fixed_reason else "Boom: down")

    def test_rate_failures_counted_without_the_lock_move_with_the_window(self, clock: ManualClock) -> None:
        """Failures counted without the lock are settled into their bucket when the next one
        starts, and leave the window with it."""
        breaker = rate_breaker(clock, window_seconds=10, minimum_calls=1000)
        call = breaker.protect("svc")(boom)
        ok = breaker.protect("svc")(lambda: None)
        for _ in range(30):
            with pytest.raises(Boom):
                call()
        ok()
        clock.advance(6)
        for _ in range(10):
            with pytest.raises(Boom):
                call()
        snapshot = breaker.state("svc")
        assert (snapshot.calls, snapshot.failures) == (41, 40)
        clock.advance(5)  # the first 31 calls left the window
        snapshot = breaker.state("svc")
        assert (snapshot.calls, snapshot.failures) == (10, 10)

    def test_the_failure_that_makes_a_rate_due_opens_the_circuit(self, clock: ManualClock) -> None:
        """The lock-free count's bound never hides a due rate: the failure that makes it due opens."""
        breaker = rate_breaker(clock, minimum_calls=10, failure_rate_threshold=0.5)
        call = breaker.protect("svc")(boom)
        ok = breaker.protect("svc")(lambda: None)
        for _ in range(5):
            ok()
        for _ in range(4):
            with pytest.raises(Boom):
                call()
        assert breaker.state("svc").state.value == "closed"  # 4 of 9 calls
        with pytest.raises(Boom):
            call()
        snapshot = breaker.state("svc")
        assert (snapshot.state.value, snapshot.opened_by, snapshot.calls, snapshot.failures) == (
            "open",
            "failure_rate",
            10,
            5,
        )

    @pytest.mark.parametrize("failure_rate", [None, 0.9])
    def test_a_failure_that_completes_the_minimum_opens_a_slow_call_rate(
        self, clock: ManualClock, failure_rate: float | None
    ) -> None:
        """A fast failure adds no slow call, but it can bring the calls up to ``minimum_calls``
        under a slow-call rate that is already met: it opens the circuit (with or without a
        failure-rate trigger beside it)."""
        breaker = rate_breaker(
            clock,
            failure_rate_threshold=failure_rate,
            slow_call_rate_threshold=0.5,
            slow_call_seconds=1,
            minimum_calls=4,
        )

        def slow() -> None:
            clock.advance(2)

        for _ in range(3):
            breaker.execute("svc", slow)
        assert breaker.state("svc").state.value == "closed"  # 3 slow calls of 3: under the minimum
        with pytest.raises(Boom):
            breaker.execute("svc", boom)
        snapshot = breaker.state("svc")
        assert (snapshot.state.value, snapshot.opened_by, snapshot.calls) == ("open", "slow_call_rate", 4)

    def test_a_rate_failure_opens_once_never_early(self) -> None:
        """Under 8 threads a failure-rate circuit opens once, never before the failure that makes it due."""
        breaker = rate_breaker(failure_rate_threshold=1.0, minimum_calls=400)
        opened_at: list[object] = []
        breaker.add_listener(opened_at.append, calls=False)
        call = breaker.protect("svc")(boom)
        barrier = threading.Barrier(8)
        ran = [0] * 8

        def worker(index: int) -> None:
            barrier.wait(timeout=10)
            for _ in range(100):
                try:
                    call()
                except Boom:
                    ran[index] += 1
                except CircuitOpenError:
                    pass

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
        finally:
            sys.setswitchinterval(old)
        snap = breaker.state("svc")
        assert snap.state.value == "open"
        assert snap.opened_by == "failure_rate"
        # Never before the 400th failure; failures in flight while it opened count too.
        assert snap.calls == snap.failures
        assert 400 <= snap.calls <= sum(ran) <= 400 + 7
        assert len(opened_at) == 1


class TestRateFailureRaces:
    """A failure under a failure-rate trigger reads the window's counts without the lock; each
    test forces a thread switch at one point of that read (a roll by another thread) and
    checks that the failure that makes the rate due still opens the circuit."""

    @staticmethod
    def breaker(clock: ManualClock) -> tuple[CircuitBreaker, Callable[[], None], Callable[[], None]]:
        breaker = rate_breaker(clock, window_seconds=60, failure_rate_threshold=0.5, minimum_calls=4)
        return breaker, breaker.protect("svc")(boom), breaker.protect("svc")(lambda: None)

    def test_a_roll_between_the_reads_of_the_counts(self, clock: ManualClock) -> None:
        """The counts change under the read (a snapshot rolls to the next bucket): the failure
        checks under the lock, and opens."""
        breaker, call, ok = self.breaker(clock)
        ok()
        ok()
        with pytest.raises(Boom):
            call()
        model = breaker._circuit("svc")._model  # type: ignore[attr-defined]

        class Totals(list[int]):
            armed = True

            def __getitem__(self, index: Any) -> Any:
                value = list.__getitem__(self, index)  # read, and then a thread switch:
                if index == 1 and Totals.armed:
                    Totals.armed = False
                    clock.advance(model.policy.bucket_ms / 1000)  # the next bucket starts
                    breaker.state("svc")  # another thread's snapshot rolls the window
                return value

        model.totals = Totals(model.totals)
        with pytest.raises(Boom):
            call()  # 2 failures of 4 calls: 0.5 with minimum_calls 4, due
        assert not Totals.armed
        snapshot = breaker.state("svc")
        assert (snapshot.state.value, snapshot.opened_by, snapshot.calls, snapshot.failures) == (
            "open",
            "failure_rate",
            4,
            2,
        )

    def test_a_snapshot_right_after_the_count(self, clock: ManualClock) -> None:
        """Another thread reads the circuit (a snapshot: the window's counts) between this
        failure's count and its check: the check still sees every failure, and opens."""
        breaker = rate_breaker(clock, failure_rate_threshold=0.5, minimum_calls=10)
        call, ok = breaker.protect("svc")(boom), breaker.protect("svc")(lambda: None)
        for _ in range(5):
            ok()
        for _ in range(4):
            with pytest.raises(Boom):
                call()
        model = breaker._circuit("svc")._model  # type: ignore[attr-defined]

        def count_then_switch(count: Callable[[], int]) -> int:
            before = count()
            breaker.state("svc")
            return before

        model.fail_counter = HookedCount(model.fail_counter, count_then_switch)
        with pytest.raises(Boom):
            call()  # 5 failures of 10 calls: due
        snapshot = breaker.state("svc")
        assert (snapshot.state.value, snapshot.calls, snapshot.failures) == ("open", 10, 5)

    def test_a_policy_change_while_it_counts(self, clock: ManualClock) -> None:
        """Another thread lowers the threshold (and a success runs the check a change calls for)
        between this failure's look at the policy and its count: it is judged by the new policy,
        whose rate it makes due, and opens the circuit."""
        rates = {"window_seconds": 60, "max_failures": None, "minimum_calls": 4}
        breaker = rate_breaker(clock, failure_rate_threshold=0.9, **rates)
        call, ok = breaker.protect("svc")(boom), breaker.protect("svc")(lambda: None)
        ok()
        with pytest.raises(Boom):
            call()
        model = breaker._circuit("svc")._model  # type: ignore[attr-defined]
        real = model.fail_counter

        def switch_then_count(count: Callable[[], int]) -> int:
            model.fail_counter = real
            breaker.set_policy("svc", ServicePolicy(failure_rate_threshold=0.5, **rates))
            ok()  # 1 failure of 3 calls, under minimum_calls: the change's check finds nothing
            return count()

        model.fail_counter = HookedCount(real, switch_then_count)
        with pytest.raises(Boom):
            call()  # 2 failures of 4 calls: the new rate, 0.5, is due
        snapshot = breaker.state("svc")
        assert (snapshot.state.value, snapshot.opened_by, snapshot.calls, snapshot.failures) == (
            "open",
            "failure_rate",
            4,
            2,
        )

    def test_a_roll_paused_while_it_drops_a_bucket(self, clock: ManualClock) -> None:
        """Another thread's failure reads the counts while a roll has moved to the new bucket but
        not yet taken an expired bucket of successes off the totals: it checks under the lock."""
        breaker, call, ok = self.breaker(clock)
        model = breaker._circuit("svc")._model  # type: ignore[attr-defined]
        step = model.bucket_ms / 1000
        for _ in range(10):
            ok()
        clock.advance(step)
        for _ in range(3):  # 3 failures of 13 calls: not due
            with pytest.raises(Boom):
                call()
        clock.advance(step * (RATE_BUCKETS - 1))  # the successes' bucket leaves at the next roll
        threads: list[threading.Thread] = []

        def fail() -> None:
            with pytest.raises(Boom):
                call()

        class Buckets(dict[int, list[int]]):
            def pop(self, key: int, *default: Any) -> Any:
                value = dict.pop(self, key, *default)
                if not threads:  # a thread switch inside the roll's drop loop
                    threads.append(threading.Thread(target=fail))
                    threads[0].start()
                    threads[0].join(0.2)  # (it waits for the roll's lock: checked below)
                return value

        model._buckets = Buckets(model._buckets)
        breaker.state("svc")  # this thread's snapshot rolls, dropping the successes' bucket
        threads[0].join(10)
        snapshot = breaker.state("svc")
        assert (snapshot.state.value, snapshot.opened_by, snapshot.calls, snapshot.failures) == (
            "open",
            "failure_rate",
            4,
            4,
        )

    def test_a_failure_while_the_opening_is_not_yet_published(
        self, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The opening thread has opened the circuit and cleared its window, but not yet
        published the state that calls check: another thread's call, let in, fails and waits
        for the lock; its next call is rejected (it does not run on while the opener waits)."""
        breaker = rate_breaker(clock, failure_rate_threshold=1.0, minimum_calls=4)
        lock = WaitedLock()
        breaker._circuit("svc")._lock = lock  # type: ignore[attr-defined]
        call = breaker.protect("svc")(boom)
        for _ in range(3):
            with pytest.raises(Boom):
                call()
        outcomes: list[str] = []
        threads: list[threading.Thread] = []
        waited: list[bool] = []

        def other_thread() -> None:
            for _ in range(2):
                try:
                    call()
                except Boom:
                    outcomes.append("ran")
                except CircuitOpenError:
                    outcomes.append("rejected")

        clear = CircuitModel._clear_window

        def clear_then_switch(model: CircuitModel) -> None:
            clear(model)
            if model.state.value == "open" and not threads:  # (called by the opening)
                threads.append(threading.Thread(target=other_thread))
                threads[0].start()
                # Its first call, let in, fails and waits for this thread's lock (checked below:
                # an assertion here would be logged by the failure's recorder, not raised).
                waited.append(lock.waited_for.wait(10))

        monkeypatch.setattr(CircuitModel, "_clear_window", clear_then_switch)
        with pytest.raises(Boom):
            call()  # the 4th failure of 4 calls: due, opens
        threads[0].join(10)
        assert waited == [True], "the other thread's failure did not wait for the lock"
        assert outcomes == ["ran", "rejected"]
        assert breaker.state("svc").state.value == "open"

    def test_failures_during_a_roll_wait_for_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Failures counted by other threads while a roll holds the lock (one before it reads the
        failure count, one after) wait for it, and are neither lost nor judged on half-moved
        counts."""
        import tnm.circuit.state as state

        clock = SettableClock()
        breaker = rate_breaker(clock, window_seconds=60, failure_rate_threshold=0.6, minimum_calls=4)
        lock = WaitedLock()
        breaker._circuit("svc")._lock = lock  # type: ignore[attr-defined]
        call, ok = breaker.protect("svc")(boom), breaker.protect("svc")(lambda: None)
        step = breaker._circuit("svc")._model.policy.bucket_ms / 1000  # type: ignore[attr-defined]
        ok()
        ok()
        with pytest.raises(Boom):
            call()
        clock.now += step
        breaker.state("svc")  # the next bucket starts: 3 calls, 1 failure settled
        threads: list[threading.Thread] = []
        waited: list[bool] = []

        def fail_meanwhile() -> None:  # another thread, whose failure read the clock before the roll
            def fail() -> None:
                with pytest.raises(Boom):
                    call()

            clock.now -= step
            lock.waited_for.clear()
            thread = threading.Thread(target=fail)
            thread.start()
            # It blocks on the roll's lock (checked below: an assertion here would be raised
            # inside the roll), or it ends if it never needed the lock.
            waited.append(lock.waited_for.wait(10))
            clock.now += step
            threads.append(thread)

        real = state.counted

        def counted(counter: Any) -> int:  # the roll reads two counters
            if len(threads) < 2:
                fail_meanwhile()
            return real(counter)

        monkeypatch.setattr(state, "counted", counted)
        clock.now += step
        breaker.state("svc")  # this thread's snapshot rolls the window, reading the counters
        monkeypatch.setattr(state, "counted", real)
        for thread in threads:
            thread.join(10)
        assert waited == [True, True], "a failure during the roll did not wait for its lock"
        snapshot = breaker.state("svc")
        assert (snapshot.state.value, snapshot.opened_by, snapshot.calls, snapshot.failures) == (
            "open",
            "failure_rate",
            5,
            3,
        )

    def test_a_time_read_before_another_roll_never_moves_the_window_back(self, clock: ManualClock) -> None:
        """A failure whose time was read before another thread rolled to a later bucket checks
        the window as it stands: the window never goes back a bucket."""
        breaker = rate_breaker(clock, window_seconds=60, failure_rate_threshold=0.5, minimum_calls=4)
        circuit = breaker._circuit("svc")  # type: ignore[attr-defined]
        model, real = circuit._model, circuit._lock
        step = model.policy.bucket_ms / 1000

        class SwitchingLock:
            armed = False

            def acquire(self) -> bool:
                if SwitchingLock.armed:
                    SwitchingLock.armed = False
                    clock.advance(step)
                    ok()  # another thread's success rolls to the next bucket
                return bool(real.acquire())

            def release(self) -> None:
                real.release()

            def __enter__(self) -> None:
                real.acquire()

            def __exit__(self, *exc: object) -> None:
                real.release()

        circuit._lock = SwitchingLock()  # (before protect: the failure path binds its lock)
        call, ok = breaker.protect("svc")(boom), breaker.protect("svc")(lambda: None)
        for _ in range(3):
            ok()
        with pytest.raises(Boom):
            call()
        bucket = model.bucket
        SwitchingLock.armed = True
        with pytest.raises(Boom):
            call()  # 2 failures: may be due, checked under the lock (2 of 5: not due)
        assert not SwitchingLock.armed
        assert model.bucket == bucket + 1
        snapshot = breaker.state("svc")
        assert (snapshot.calls, snapshot.failures) == (6, 2)
