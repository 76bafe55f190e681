"""Fleet-wide policy overrides on a real redis-server: stored, applied by every process, restored."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tnm.circuit import (
    CircuitBackendError,
    CircuitBreaker,
    CircuitEvent,
    CircuitState,
    EventKind,
    InvalidConfigError,
    ServicePolicy,
)
from tnm.circuit.testing import capture_events

from ..redis_server import RedisServer
from .helpers import read_line, redis_backend, wait_for

MakeBreaker = Callable[..., CircuitBreaker]
FAST = {"use_clock": False, "backend_options": {"refresh_interval": 0.1}}
REGISTRY = "test:circuit:policies"


def changes_of(breaker: CircuitBreaker) -> list[CircuitEvent]:
    events: list[CircuitEvent] = []
    breaker.add_listener(lambda e: events.append(e) if e.kind is EventKind.POLICY_CHANGED else None)
    return events


def boom() -> None:
    raise RuntimeError("down")


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(RuntimeError):
            breaker.execute("svc", boom)


class TestFleetOverride:
    def test_reaches_another_process_within_refresh(self, make_redis_breaker: MakeBreaker) -> None:
        """set_policy(fleet=True) in one breaker is applied by another, with a POLICY_CHANGED saying fleet."""
        setter = make_redis_breaker(max_failures=5, **FAST)
        other = make_redis_breaker(max_failures=5, **FAST)
        other.execute("svc", lambda: None)
        seen = changes_of(other)
        setter.set_policy(
            "svc", ServicePolicy(max_failures=2, open_seconds=30, max_open_seconds=300), fleet=True
        )
        assert setter.policy_source("svc") == "fleet"
        assert wait_for(lambda: other.policy_source("svc") == "fleet", 5)
        assert other.policy_for("svc").max_failures == 2
        assert wait_for(lambda: len(seen) == 1, 5)
        assert seen[0].source == "fleet"
        assert "max_failures: 5 -> 2" in (seen[0].reason or "")
        fail(other, 2)
        assert other.state("svc").state is CircuitState.OPEN

    def test_only_numeric_and_mode_fields_travel(self, make_redis_breaker: MakeBreaker) -> None:
        """The stored override holds numbers and mode only; each process keeps its own exception rules."""

        class Ignored(Exception):
            pass

        setter = make_redis_breaker(max_failures=5, **FAST)
        other = make_redis_breaker(max_failures=5, ignore_exceptions=[Ignored], **FAST)
        setter.set_policy("svc", ServicePolicy(max_failures=1), fleet=True)
        stored = json.loads(setter.backend.client().hget(REGISTRY, "svc"))  # type: ignore[attr-defined]
        assert "ignore_exceptions" not in stored
        assert stored["max_failures"] == 1
        assert wait_for(lambda: other.policy_source("svc") == "fleet", 5)
        assert other.policy_for("svc").ignore_exceptions == (Ignored,)

    def test_fields_given_merge_into_the_stored_override(self, make_redis_breaker: MakeBreaker) -> None:
        """Two changes of different fields (a mapping each) leave both stored."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        breaker.set_policy("svc", {"max_failures": 3}, fleet=True)
        breaker.set_policy("svc", {"open_seconds": 7}, fleet=True)
        assert breaker.policy_overrides() == {"svc": {"max_failures": 3, "open_seconds": 7}}
        policy = breaker.policy_for("svc")
        assert (policy.max_failures, policy.open_seconds) == (3, 7)

    def test_started_later_applies_at_initialize(self, make_redis_breaker: MakeBreaker) -> None:
        """A process initialized after the change governs the service by the override at once."""
        make_redis_breaker(max_failures=5, **FAST).set_policy("svc", {"max_failures": 2}, fleet=True)
        later = make_redis_breaker(max_failures=5, **FAST)
        assert later.policy_source("svc") == "fleet"
        assert later.policy_for("svc").max_failures == 2

    def test_fleet_wins_over_process_and_clear_returns(self, make_redis_breaker: MakeBreaker) -> None:
        """fleet > process > code, and clearing the fleet override falls back to the process's."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        breaker.set_policy("svc", ServicePolicy(max_failures=4))
        breaker.set_policy("svc", {"max_failures": 2}, fleet=True)
        assert (breaker.policy_source("svc"), breaker.policy_for("svc").max_failures) == ("fleet", 2)
        breaker.clear_policy("svc", fleet=True)
        assert (breaker.policy_source("svc"), breaker.policy_for("svc").max_failures) == ("process", 4)
        breaker.clear_policy("svc")
        assert breaker.policy_source("svc") == "code"

    def test_clear_reaches_other_processes(self, make_redis_breaker: MakeBreaker) -> None:
        """clear_policy(fleet=True) returns every process to its code's policy."""
        setter = make_redis_breaker(max_failures=5, **FAST)
        other = make_redis_breaker(max_failures=5, **FAST)
        setter.set_policy("svc", {"max_failures": 2}, fleet=True)
        assert wait_for(lambda: other.policy_source("svc") == "fleet", 5)
        setter.clear_policy("svc", fleet=True)
        assert wait_for(lambda: other.policy_source("svc") == "code", 5)
        assert other.policy_for("svc").max_failures == 5


class TestLiveCircuitOnRedis:
    def test_lower_threshold_already_exceeded_opens_at_next_failure(
        self, make_redis_breaker: MakeBreaker
    ) -> None:
        """Four shared failures, then a fleet max_failures=3: the next failure opens the circuit."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        fail(breaker, 4)
        breaker.set_policy("svc", {"max_failures": 3}, fleet=True)
        assert breaker.state("svc").state is CircuitState.CLOSED
        fail(breaker, 1)
        assert breaker.state("svc").state is CircuitState.OPEN

    def test_lower_threshold_already_exceeded_opens_at_next_success(
        self, make_redis_breaker: MakeBreaker
    ) -> None:
        """Four shared failures, then a fleet max_failures=3: the next success, in another
        process too, is judged under the new threshold and opens the circuit for the fleet."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        other = make_redis_breaker(max_failures=5, **FAST)
        fail(breaker, 4)
        assert other.state("svc").failures == 4
        with capture_events(other) as events:
            breaker.set_policy("svc", {"max_failures": 3}, fleet=True)
            # Applied to the other process's live circuit (the event follows the change).
            assert wait_for(lambda: any(e.kind is EventKind.POLICY_CHANGED for e in events), 5)
        assert other.execute("svc", lambda: "ok") == "ok"
        assert other.state("svc").state is CircuitState.OPEN
        assert wait_for(lambda: breaker.state("svc").state is CircuitState.OPEN, 5)

    def test_the_quorum_travels_fleet_wide(self, make_redis_breaker: MakeBreaker) -> None:
        """min_failing_processes is one of the fields a fleet override sets in every process."""
        breaker = make_redis_breaker(**FAST)
        other = make_redis_breaker(**FAST)
        other.state("svc")
        breaker.set_policy("svc", {"min_failing_processes": 2}, fleet=True)
        assert breaker.policy_for("svc").min_failing_processes == 2
        assert wait_for(lambda: other.policy_for("svc").min_failing_processes == 2, 5)

    def test_open_deadline_cut_for_every_process(self, make_redis_breaker: MakeBreaker) -> None:
        """A circuit open for 60 s, then a fleet open_seconds of 2: every process sees at most 2 s left."""
        breaker = make_redis_breaker(max_failures=1, open_seconds=60, **FAST)
        other = make_redis_breaker(max_failures=1, open_seconds=60, **FAST)
        fail(breaker, 1)
        assert wait_for(lambda: other.state("svc").state is CircuitState.OPEN, 5)
        breaker.set_policy("svc", {"open_seconds": 2}, fleet=True)
        assert (breaker.state("svc").retry_after or 0) <= 2
        assert wait_for(lambda: (other.state("svc").retry_after or 99) <= 2, 5)

    def test_state_shows_the_new_threshold(self, make_redis_breaker: MakeBreaker) -> None:
        """After a fleet change, state() reports the new max_failures at once, in every process."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        other = make_redis_breaker(max_failures=5, **FAST)
        fail(breaker, 1)
        other.state("svc")
        breaker.set_policy("svc", {"max_failures": 3}, fleet=True)
        assert breaker.state("svc").max_failures == 3
        assert wait_for(lambda: other.state("svc").max_failures == 3, 5)


class TestBadInput:
    def test_invalid_value_refused_nothing_stored(self, make_redis_breaker: MakeBreaker) -> None:
        """A bad value is refused naming the field; nothing reaches the registry."""
        breaker = make_redis_breaker(**FAST)
        with pytest.raises(InvalidConfigError) as info:
            breaker.set_policy("svc", {"max_failures": 0}, fleet=True)
        assert info.value.field == "max_failures"
        with pytest.raises(InvalidConfigError) as info:
            breaker.set_policy("svc", {"ignore_exceptions": ()}, fleet=True)
        assert info.value.field == "ignore_exceptions"
        assert breaker.policy_overrides() == {}
        assert breaker.policy_source("svc") == "code"

    def test_patch_invalid_for_a_process_is_refused_there(
        self, make_redis_breaker: MakeBreaker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A slow-call rate without slow_call_seconds is refused by a process whose code has none:
        one warning, a refused POLICY_CHANGED, its policy untouched."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        seen = changes_of(breaker)
        with caplog.at_level(logging.WARNING, logger="tnm.circuit"):
            breaker.set_policy("svc", {"slow_call_rate_threshold": 0.5}, fleet=True)
        assert breaker.policy_for("svc").slow_call_rate_threshold is None
        assert breaker.policy_source("svc") == "code"
        assert [e.reason for e in seen] == [
            "refused: slow_call_rate_threshold: needs slow_call_seconds: what counts as a slow call"
        ]
        assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1

    def test_unknown_fields_ignored_with_one_warning(
        self, make_redis_breaker: MakeBreaker, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A field unknown here (a newer release wrote it) is ignored, warned once; the rest applies."""
        redis_server.client().hset(REGISTRY, "svc", json.dumps({"max_failures": 2, "quorum_size": 3}))
        with caplog.at_level(logging.WARNING, logger="tnm.circuit"):
            breaker = make_redis_breaker(max_failures=5, **FAST)
            assert breaker.policy_for("svc").max_failures == 2
            for _ in range(3):  # more rounds of the refresher: still one warning
                redis_backend(breaker).refresher.refresh()
        assert len([r for r in caplog.records if "quorum_size" in r.getMessage()]) == 1

    def test_corrupt_override_ignored_and_repaired(
        self, make_redis_breaker: MakeBreaker, redis_server: RedisServer
    ) -> None:
        """A value that is not a JSON object is ignored, reported as storage_repaired, and removed."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        repaired: list[CircuitEvent] = []
        breaker.add_listener(lambda e: repaired.append(e) if e.kind is EventKind.STORAGE_REPAIRED else None)
        redis_server.client().hset(REGISTRY, "svc", "{not json")
        assert wait_for(lambda: any(e.service == "svc" for e in repaired), 5)
        assert wait_for(lambda: redis_server.client().hget(REGISTRY, "svc") is None, 5)
        assert breaker.policy_source("svc") == "code"


class TestStoreDown:
    def test_fleet_change_raises_when_redis_is_down(
        self, make_redis_breaker: MakeBreaker, redis_server: RedisServer
    ) -> None:
        """With Redis stopped, set_policy(fleet=True) raises CircuitBackendError and applies nothing."""
        breaker = make_redis_breaker(
            max_failures=5, use_clock=False, backend_options={"socket_timeout": 0.2, "refresh_interval": 0.1}
        )
        redis_server.stop()
        with pytest.raises(CircuitBackendError) as info:
            breaker.set_policy("svc", {"max_failures": 2}, fleet=True)
        assert "not stored" in str(info.value)
        assert breaker.policy_source("svc") == "code"
        assert breaker.policy_for("svc").max_failures == 5


class TestGrants:
    def test_initialize_names_the_overrides_key_it_may_not_read(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """A user that may not read the policy overrides fails at initialize(), naming the key."""
        rules = [
            "on",
            ">pw",
            "~acl9:{*",
            "~acl9:epoch",
            "~acl9:changes",
            "~acl9:forced",
            "&acl9:events",
            "+@all",
        ]
        redis_server.client().execute_command("ACL", "SETUSER", "no-policies", "reset", *rules)
        breaker = CircuitBreaker(
            "redis", redis_url=f"redis://no-policies:pw@127.0.0.1:{redis_server.port}/0", namespace="acl9"
        )
        try:
            with pytest.raises(CircuitBackendError) as info:
                breaker.initialize()
            assert "'acl9:policies'" in str(info.value)
            assert "HGETALL" in str(info.value)
        finally:
            breaker.close()
            redis_server.client().acl_deluser("no-policies")


class TestSurvivesDataLoss:
    def test_flushall_restores_the_override(
        self, make_redis_breaker: MakeBreaker, redis_server: RedisServer
    ) -> None:
        """After FLUSHALL a running process writes the override back, and a later process applies it."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        breaker.set_policy("svc", {"max_failures": 2}, fleet=True)
        redis_server.client().flushall()
        assert wait_for(lambda: redis_server.client().hget(REGISTRY, "svc") is not None, 10)
        assert breaker.policy_source("svc") == "fleet"
        assert make_redis_breaker(max_failures=5, **FAST).policy_for("svc").max_failures == 2

    def test_a_write_ending_during_a_read_is_kept_for_the_restore(
        self, make_redis_breaker: MakeBreaker
    ) -> None:
        """A refresher read begun before ``set_policy`` stored its patch keeps the patch known, so a
        data loss right after still writes it back."""
        breaker = make_redis_breaker(max_failures=5)
        redis_backend(breaker).refresher.stop(5)  # (a round of its own could restore what is pending)
        registry = redis_backend(breaker).policy_overrides
        hook = registry.on_change
        assert hook is not None
        client = redis_backend(breaker).client()
        mark = registry.mark()  # the refresher's read begins: "other" changed, "svc" not written yet

        def write_meanwhile(service: str, patch: dict[str, object] | None, unknown: list[str]) -> None:
            hook(service, patch, unknown)
            if service == "other":
                registry.store("svc", {"max_failures": 2})  # ends while the read is applied

        registry.on_change = write_meanwhile
        registry.read({b"other": b'{"max_failures": 3}'}, client, mark)
        registry.on_change = hook
        assert registry.known["svc"] == '{"max_failures":2}'
        registry.lost()  # ("other" exists only in this made-up read: a refresher round may drop it)
        assert registry.pending["svc"] == '{"max_failures":2}'

    def test_a_notice_read_after_a_flushall_drops_nothing(
        self, make_redis_breaker: MakeBreaker, redis_server: RedisServer
    ) -> None:
        """The read a policy notice asks for, made after the store was emptied, leaves the override
        known (the round that reports the loss writes it back), not dropped as "cleared"."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        breaker.set_policy("svc", {"max_failures": 2}, fleet=True)
        refresher = redis_backend(breaker).refresher
        refresher.stop(5)  # (its reads run on its thread, one at a time: here, on this one)
        redis_server.client().flushall()
        refresher._read_policies()  # the notice's read, after the loss
        assert breaker.policy_source("svc") == "fleet"
        refresher.refresh()  # the round that reports the loss writes the override back
        assert redis_server.client().hget(REGISTRY, "svc") is not None

    @pytest.mark.slow
    def test_restart_without_persistence(
        self, make_redis_breaker: MakeBreaker, redis_server: RedisServer
    ) -> None:
        """A redis-server restarted empty gets the override back from a running process."""
        breaker = make_redis_breaker(max_failures=5, **FAST)
        breaker.set_policy("svc", {"max_failures": 2}, fleet=True)
        redis_server.restart()
        assert wait_for(lambda: _registry_value(redis_server) is not None, 15)
        assert breaker.policy_for("svc").max_failures == 2


class TestWritesDuringARead:
    """A fleet write that ends while the refresher applies a read it began earlier: the writer's
    value is what this process applies and keeps (the hook writes from inside the read)."""

    @staticmethod
    def read_with_a_write_meanwhile(breaker: CircuitBreaker, write: Callable[[], None]) -> None:
        registry = redis_backend(breaker).policy_overrides
        client = redis_backend(breaker).client()
        mark = registry.mark()
        raw = {b"other": b'{"max_failures": 3}', **client.hgetall(REGISTRY)}  # read before the write
        hook = registry.on_change
        assert hook is not None

        def hook_then_write(service: str, patch: dict[str, object] | None, unknown: list[str]) -> None:
            hook(service, patch, unknown)
            if service == "other":
                write()

        registry.on_change = hook_then_write
        try:
            registry.read(raw, client, mark)
        finally:
            registry.on_change = hook

    def test_a_set_is_applied_not_the_value_it_replaced(self, make_redis_breaker: MakeBreaker) -> None:
        breaker = make_redis_breaker(max_failures=5)
        breaker.set_policy("svc", {"max_failures": 7}, fleet=True)
        self.read_with_a_write_meanwhile(
            breaker, lambda: breaker.set_policy("svc", {"max_failures": 2}, fleet=True)
        )
        assert breaker.policy_for("svc").max_failures == 2
        assert redis_backend(breaker).policy_overrides.known["svc"] == '{"max_failures":2}'

    def test_a_clear_is_not_undone(self, make_redis_breaker: MakeBreaker) -> None:
        breaker = make_redis_breaker(max_failures=5)
        breaker.set_policy("svc", {"max_failures": 7}, fleet=True)
        self.read_with_a_write_meanwhile(breaker, lambda: breaker.clear_policy("svc", fleet=True))
        assert (breaker.policy_source("svc"), breaker.policy_for("svc").max_failures) == ("code", 5)
        assert "svc" not in redis_backend(breaker).policy_overrides.known

    def test_a_read_marked_while_the_write_ran_leaves_it_known(self, make_redis_breaker: MakeBreaker) -> None:
        """A round whose mark and read fall between the write's start and its end: the override
        stays known, so a data loss right after writes it back."""
        breaker = make_redis_breaker(max_failures=5)
        redis_backend(breaker).refresher.stop(5)  # (a round of its own could restore what is pending)
        registry = redis_backend(breaker).policy_overrides
        client = redis_backend(breaker).client()
        taken: dict[str, object] = {}
        original = registry._write

        def write(command: str, service: str, do: Callable[[object], object]) -> None:
            taken["mark"], taken["raw"] = registry.mark(), client.hgetall(REGISTRY)
            original(command, service, do)

        registry._write = write  # type: ignore[method-assign]
        try:
            breaker.set_policy("svc", {"max_failures": 2}, fleet=True)
        finally:
            registry._write = original  # type: ignore[method-assign]
        registry.read(taken["raw"], client, taken["mark"])  # type: ignore[arg-type]
        registry.lost()
        assert "svc" in registry.pending


def _registry_value(server: RedisServer) -> bytes | None:
    try:
        return server.client().hget(REGISTRY, "svc")  # type: ignore[return-value]
    except Exception:
        return None


WORKER = """
import sys, time
from tnm.circuit import CircuitBreaker, EventKind, ServicePolicy
breaker = CircuitBreaker("redis", redis_url=sys.argv[1], namespace="test:circuit",
                         default_policy=ServicePolicy(max_failures=5), refresh_interval=0.2)
breaker.add_listener(lambda e: print(f"changed {e.source} {e.reason}", flush=True)
                     if e.kind is EventKind.POLICY_CHANGED else None)
breaker.initialize()
breaker.execute("svc", lambda: None)
print(f"ready {breaker.policy_source('svc')} {breaker.policy_for('svc').max_failures}", flush=True)
sys.stdin.readline()
print(f"final {breaker.policy_source('svc')} {breaker.policy_for('svc').max_failures}", flush=True)
breaker.close()
"""


@pytest.fixture
def workers(redis_url: str) -> Iterator[Callable[[int], list[subprocess.Popen[str]]]]:
    started: list[subprocess.Popen[str]] = []

    def start(n: int) -> list[subprocess.Popen[str]]:
        batch = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, redis_url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        started.extend(batch)
        return batch

    yield start
    for process in started:
        process.kill()
        process.communicate(timeout=10)  # waits, and closes its pipes


@pytest.mark.slow
class TestRealProcesses:
    def test_change_reaches_every_process(
        self, workers: Callable[[int], list[subprocess.Popen[str]]], make_redis_breaker: MakeBreaker
    ) -> None:
        """Three running processes each apply a fleet change (one POLICY_CHANGED each); a fourth
        started after it applies it at initialize (and says so)."""
        running = workers(3)
        assert [read_line(p) for p in running] == ["ready code 5"] * 3
        make_redis_breaker(**FAST).set_policy("svc", {"max_failures": 2}, fleet=True)
        for process in running:
            assert read_line(process, 10) == "changed fleet max_failures: 5 -> 2"
        [later] = workers(1)
        assert [read_line(later), read_line(later)] == ["changed fleet max_failures: 5 -> 2", "ready fleet 2"]
        for process in [*running, later]:
            assert process.stdin is not None
            process.stdin.write("\n")
            process.stdin.flush()
            assert read_line(process) == "final fleet 2"

    def test_older_release_ignores_a_field_it_does_not_know(
        self, workers: Callable[[int], list[subprocess.Popen[str]]], redis_server: RedisServer
    ) -> None:
        """During a deploy a newer release's field is ignored by this one, which applies the rest."""
        running = workers(2)
        assert [read_line(p) for p in running] == ["ready code 5"] * 2
        redis_server.client().hset(
            REGISTRY, "svc", json.dumps({"max_failures": 3, "a_field_of_a_later_release": 2})
        )
        for process in running:
            assert read_line(process, 10) == "changed fleet max_failures: 5 -> 3"
