"""The fleet's view is never silently wrong: faults injected into a real redis-server while
application processes call a service, counting what reached the callers and the service."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis.client
from click.testing import CliRunner

from tnm.circuit import (
    CircuitBackendError,
    CircuitBreaker,
    CircuitEvent,
    CircuitOpenError,
    CircuitState,
    EventKind,
    ServicePolicy,
)
from tnm.circuit.backends.redis import RedisBackend
from tnm.circuit.testing import ManualClock, capture_events, mirror_state
from tnm.circuit_cli import cli

from ..redis_server import ENGINE, RedisServer
from .helpers import redis_backend, traffic, wait_for

REFRESH = 0.2


def _breaker(url: str, namespace: str, **policy: object) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace=namespace,
        default_policy=ServicePolicy(**policy),  # type: ignore[arg-type]
        refresh_interval=REFRESH,
        socket_timeout=0.2,
    )
    breaker.initialize()
    return breaker


@pytest.mark.slow
class TestTrialOutcomeDuringAnOutage:
    def test_a_trial_that_ended_while_redis_was_paused_frees_the_fleet(
        self, redis_url: str, redis_server: RedisServer, tmp_path: Path
    ) -> None:
        """A trial that succeeds while Redis is paused is reported once Redis answers: every
        process calls the healthy service again within a second, not after trial_timeout."""
        policy = {"max_failures": 1, "open_seconds": 0.3, "trial_timeout_seconds": 30}
        go = tmp_path / "go"
        extra = ("svc", json.dumps(policy), "3", str(go))
        with traffic(redis_url, "trial", 5.0, 2, worker="call_worker", extra=extra) as workers:
            tester = _breaker(redis_url, "trial", **policy)
            try:
                tester.record_failure("svc", "down")
                assert wait_for(lambda: tester.state("svc").state is CircuitState.HALF_OPEN, 5)
                outcome: list[str] = []
                trial = threading.Thread(
                    target=lambda: outcome.append(tester.execute("svc", lambda: time.sleep(1.0) or "ok"))
                )
                trial.start()
                permits = redis_backend(tester).keys.for_service("svc")[2]
                assert wait_for(lambda: redis_server.client().zcard(permits) == 1, 5)
                go.touch()
                time.sleep(0.3)  # the workers are rejected: the permit is taken
                assert redis_server.process is not None
                os.kill(redis_server.process.pid, signal.SIGSTOP)  # the trial ends meanwhile,
                time.sleep(2.0)  # once its process knows Redis is not answering
                os.kill(redis_server.process.pid, signal.SIGCONT)
                back = time.time()
                trial.join(10)
                results = workers.results()
            finally:
                tester.close()
        assert outcome == ["ok"]
        bound = back + 1.0  # 2 x refresh_interval, with room for a loaded machine
        for result in results:
            assert result["foreign"] == []
            assert [t for t in result["rejected"] if t > bound] == []
            assert [t for t in result["ran"] if t > bound]


def _acl_user(server: RedisServer, name: str, namespace: str, registry: str) -> str:
    """A user with every grant on ``namespace`` but ``registry`` access (``%R``, ``%RW``) to the
    operators' registry; returns its URL."""
    rules = ["on", ">pw", f"~{namespace}:{{*", f"~{namespace}:epoch", f"~{namespace}:changes"]
    rules += [f"~{namespace}:policies"]
    rules += [f"{registry}~{namespace}:forced", f"&{namespace}:events", "+@all"]
    server.client().execute_command("ACL", "SETUSER", name, "reset", *rules)
    return f"redis://{name}:pw@127.0.0.1:{server.port}/0"


class TestRefusedOverrides:
    def test_initialize_names_a_registry_it_may_not_write(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """initialize() fails, naming the command and the key, for a user that may only read the
        operators' registry."""
        url = _acl_user(redis_server, "readonly-registry", "acl1", "%R")
        breaker = CircuitBreaker("redis", redis_url=url, namespace="acl1")
        try:
            with pytest.raises(CircuitBackendError) as info:
                breaker.initialize()
            assert "HSET" in str(info.value)
            assert "'acl1:forced'" in str(info.value)
            assert "pw@" not in str(info.value)
        finally:
            breaker.close()
            redis_server.client().acl_deluser("readonly-registry")

    def test_force_open_refused_by_the_server_raises_and_the_cli_fails(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """A grant taken away after start: force_open and disable raise CircuitBackendError naming
        HSET and the registry key, nothing is forced open, the CLI exits non-zero, and no
        storage_degraded event is emitted (a configuration error is not an outage)."""
        url = _acl_user(redis_server, "revoked-registry", "acl2", "%RW")
        breaker = CircuitBreaker("redis", redis_url=url, namespace="acl2", refresh_interval=0.05)
        events: list[CircuitEvent] = []
        breaker.add_listener(events.append)
        breaker.initialize()
        try:
            _acl_user(redis_server, "revoked-registry", "acl2", "%R")
            for act in (breaker.force_open, breaker.disable):
                with pytest.raises(CircuitBackendError) as info:
                    act("pg", "maintenance")
                assert "HSET" in str(info.value)
                assert "'acl2:forced'" in str(info.value)
            assert breaker.state("pg").state is CircuitState.CLOSED
            result = CliRunner().invoke(
                cli, ["--backend", "redis", "--redis-url", url, "--namespace", "acl2", "open", "pg", "--yes"]
            )
            assert result.exit_code != 0
            assert "forced_open" not in result.output
            time.sleep(0.2)  # a few refresher rounds
            assert not breaker.backend.degraded  # type: ignore[attr-defined]
            assert [e for e in events if e.kind is EventKind.STORAGE_DEGRADED] == []
        finally:
            breaker.close()
            redis_server.client().acl_deluser("revoked-registry")

    def test_a_call_refused_the_script_is_decided_locally(
        self, redis_url: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With the script refused, failures still open the circuit in this process (the service is
        protected), the refusal is logged once as a configuration error, never as an outage."""
        url = _acl_user(redis_server, "no-script", "acl3", "%RW")
        breaker = CircuitBreaker(
            "redis", redis_url=url, namespace="acl3", refresh_interval=0.05,
            default_policy=ServicePolicy(max_failures=2),
        )  # fmt: skip
        events: list[CircuitEvent] = []
        breaker.add_listener(events.append)
        breaker.initialize()
        caplog.set_level(logging.WARNING, logger="tnm.circuit")
        reached = 0

        def down() -> None:
            nonlocal reached
            reached += 1
            raise ConnectionError("down")

        try:
            redis_server.client().acl_setuser("no-script", enabled=True, commands=["-evalsha", "-eval"])
            for _ in range(10):
                with contextlib.suppress(ConnectionError, CircuitOpenError):
                    breaker.execute("svc", down)
            time.sleep(0.2)  # a few refresher rounds, each refused too
            assert reached == 2
            lines = [r for r in caplog.records if "redis://no-script:" in r.getMessage()]
            assert len(lines) == 1
            assert "configuration error" in lines[0].getMessage()
            assert [e for e in events if e.kind is EventKind.STORAGE_DEGRADED] == []
        finally:
            breaker.close()
            redis_server.client().acl_deluser("no-script")


def _forged(service: str, state: str, server: RedisServer) -> str:
    """A well-formed notice dated 4 s after the server's time, with a high version."""
    seconds, micros = server.client().time()
    now_ms = seconds * 1000 + micros // 1000 + 4000
    open_until = -1 if state == "forced_open" else 0
    return json.dumps([service, state, open_until, 0, now_ms, 0, "", 10**9])


@pytest.mark.slow
class TestForgedNotices:
    def test_a_forged_notice_never_rejects_a_healthy_service(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """Forged 'forced open' notices published while three processes call a healthy service:
        no call is rejected (each notice only makes the processes read the keys again)."""
        extra = ("svc", json.dumps({"max_failures": 3}), "2")
        with traffic(redis_url, "forged", 2.0, 3, worker="call_worker", extra=extra) as workers:
            time.sleep(0.3)
            channel = RedisBackend(redis_url, namespace="forged").channel
            for _ in range(50):
                redis_server.client().publish(channel, _forged("svc", "forced_open", redis_server))
                time.sleep(0.01)
            results = workers.results()
        for result in results:
            assert result["foreign"] == []
            assert result["rejected"] == []
            assert result["ran"]

    def test_a_forged_notice_never_lets_calls_reach_a_down_service(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """A forged 'closed' notice for an open circuit lets no call through, state() stays open,
        and a real change made afterwards (an operator's reset) still reaches every mirror."""
        operator = _breaker(redis_url, "forged2", max_failures=1, open_seconds=60)
        app = _breaker(redis_url, "forged2", max_failures=1, open_seconds=60)
        try:
            app.is_available("down")
            operator.record_failure("down", "boom")
            assert wait_for(lambda: not app.is_available("down"), 5)
            channel = redis_backend(app).channel
            redis_server.client().publish(channel, _forged("down", "closed", redis_server))
            reached = 0

            def down() -> None:
                nonlocal reached
                reached += 1

            for _ in range(40):
                with contextlib.suppress(CircuitOpenError):
                    app.execute("down", down)
                time.sleep(0.005)
            assert reached == 0
            assert app.state("down").state is CircuitState.OPEN
            operator.reset("down")
            assert wait_for(lambda: app.is_available("down"), 5)
        finally:
            operator.close()
            app.close()


class TestEviction:
    def test_initialize_warns_when_the_store_may_evict_circuit_state(
        self, redis_url: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A store with an evicting maxmemory-policy gets one warning at initialize() that names
        the policy and the fix; noeviction gets none."""
        admin = redis_server.client()
        caplog.set_level(logging.WARNING, logger="tnm.circuit")
        try:
            for policy in ("noeviction", "volatile-ttl", "allkeys-lru"):
                admin.config_set("maxmemory-policy", policy)
                caplog.clear()
                _breaker(redis_url, "evict").close()
                lines = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
                if policy == "noeviction":
                    assert lines == []
                else:
                    assert len(lines) == 1
                    assert policy in lines[0]
                    assert "set maxmemory-policy noeviction" in lines[0]
        finally:
            admin.config_set("maxmemory-policy", "noeviction")

    def test_an_open_circuit_whose_keys_vanish_is_reported_and_the_fleet_agrees(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """An open circuit's keys evicted alone: a running process reports storage_reset for that
        service (once) and, like a new process, lets calls through again."""
        tripper = _breaker(redis_url, "evict2", max_failures=1, open_seconds=60)
        running = _breaker(redis_url, "evict2", max_failures=1, open_seconds=60)
        events: list[CircuitEvent] = []
        running.add_listener(events.append)
        try:
            running.is_available("down")
            tripper.record_failure("down", "boom")
            assert wait_for(lambda: not running.is_available("down"), 5)
            redis_server.client().delete(*redis_backend(running).keys.for_service("down", cluster=True))
            assert wait_for(lambda: running.is_available("down"), 5)
            newcomer = _breaker(redis_url, "evict2", max_failures=1, open_seconds=60)
            assert newcomer.is_available("down")
            newcomer.close()
            resets = [e for e in events if e.kind is EventKind.STORAGE_RESET]
            assert [e.service for e in resets] == ["down"]
        finally:
            tripper.close()
            running.close()

    @pytest.mark.slow
    def test_an_open_circuit_evicted_under_volatile_ttl_is_reported(
        self, redis_url: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Real eviction (maxmemory with volatile-ttl, memory filled by another writer): the open
        circuit's keys go first, and the process that mirrors it reports storage_reset for it."""
        admin = redis_server.client()
        caplog.set_level(logging.WARNING, logger="tnm.circuit")
        app = _breaker(redis_url, "evict4", max_failures=1, open_seconds=3600)
        events: list[CircuitEvent] = []
        app.add_listener(events.append)
        try:
            app.record_failure("down", "boom")
            assert not app.is_available("down")
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory-policy", "volatile-ttl")
            admin.config_set("maxmemory", used + 2_000_000)
            filler = admin.pipeline(transaction=False)
            for n in range(6000):  # ~6 MB, each expiring later than the circuit's keys
                filler.set(f"filler:{n}", "x" * 1000, ex=10 * 3600)
            filler.execute()
            key = redis_backend(app).keys.for_service("down")[0]
            assert admin.exists(key) == 0  # evicted
            assert wait_for(lambda: any(e.kind is EventKind.STORAGE_RESET for e in events), 5)
            assert [e.service for e in events if e.kind is EventKind.STORAGE_RESET] == ["down"]
        finally:
            admin.config_set("maxmemory", 0)
            admin.config_set("maxmemory-policy", "noeviction")
            app.close()

    def test_a_read_that_finds_a_forced_circuit_gone_keeps_it_forced(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """A process that reads a forced-open circuit whose keys were just evicted keeps rejecting
        its calls, reports the loss once and writes the override again."""
        app = _breaker(redis_url, "evict5")
        events: list[CircuitEvent] = []
        app.add_listener(events.append)
        try:
            app.force_open("pg", "failover")
            keys = redis_backend(app).keys
            redis_server.client().delete(*keys.for_service("pg", cluster=True), keys.forced)
            assert app.state("pg").state is CircuitState.FORCED_OPEN  # a read: the keys are gone
            ran: list[int] = []
            with contextlib.suppress(CircuitOpenError):
                app.execute("pg", lambda: ran.append(1))
            assert ran == []
            assert wait_for(lambda: redis_server.client().exists(keys.for_service("pg")[0]) == 1, 5)
            assert wait_for(lambda: redis_server.client().hexists(keys.forced, "pg"), 5)
            assert [e.service for e in events if e.kind is EventKind.STORAGE_RESET] == ["pg"]
        finally:
            app.close()

    @pytest.mark.slow
    def test_a_forced_circuit_whose_keys_and_registry_vanish_is_restored(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """An operator's force_open whose keys and registry entry are evicted mid-traffic is
        written again by the processes that knew it: no call of three processes reaches the
        service, and a new process sees it forced open."""
        operator = _breaker(redis_url, "evict3")
        operator.force_open("pg", "failover")
        extra = ("pg", json.dumps({}), "2")
        with traffic(redis_url, "evict3", 2.0, 3, worker="call_worker", extra=extra) as workers:
            time.sleep(0.3)
            keys = redis_backend(operator).keys
            redis_server.client().delete(*keys.for_service("pg", cluster=True), keys.forced)
            newcomer = _breaker(redis_url, "evict3")
            # written again by a refresher round of one of them (every 0.2 s)
            assert wait_for(lambda: newcomer.state("pg").state is CircuitState.FORCED_OPEN, 5)
            newcomer.close()
            results = workers.results()
        operator.close()
        for result in results:
            assert result["foreign"] == []
            assert result["ran"] == []
            assert result["rejected"]


class TestKeysListedAgain:
    def test_a_forced_circuit_listed_again_by_a_newcomer_is_still_found_lost(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """Keys and registry entry of a forced circuit vanish, and a new process lists the circuit
        again (closed) before the process that forced it looks: that process still finds the
        loss (the version it read is gone) and writes the override again, for the newcomer too."""
        # (no refresher rounds of their own during the test: the newcomer heard of the override,
        # and a round of its own could write it back before the test lists the circuit again)
        operator, newcomer = (
            CircuitBreaker("redis", redis_url=redis_url, namespace="relisted", refresh_interval=30)
            for _ in range(2)
        )
        operator.initialize()
        newcomer.initialize()
        try:
            for breaker in (operator, newcomer):  # their first rounds are over
                assert wait_for(redis_backend(breaker).refresher.read_done.is_set)
            operator.force_open("pg", "failover")
            redis_backend(operator).refresher.refresh()  # a round after it: nothing new since
            keys = redis_backend(operator).keys
            admin = redis_server.client()
            admin.delete(*keys.for_service("pg", cluster=True), keys.forced)
            assert newcomer.state("pg").state is CircuitState.CLOSED
            assert wait_for(
                lambda: admin.hget(keys.for_service("pg")[0], "s") == b"closed", 5
            )  # listed again
            redis_backend(operator).refresher.refresh()  # the operator's process looks now
            redis_backend(operator).refresher.refresh()  # (and writes what it lost)
            assert wait_for(lambda: newcomer.state("pg").state is CircuitState.FORCED_OPEN, 5)
            assert admin.hget(keys.forced, "pg") == b"force_open:failover"
        finally:
            operator.close()
            newcomer.close()

    def test_a_forced_circuit_repaired_by_a_new_process_stays_forced_for_all(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """Corrupt data in a forced circuit's state, met first by a process that never read it
        (so it rewrites the state from nothing: closed): the processes that knew it forced see
        the version start again, take it for a loss, and write the override back for all."""
        app, other, newcomer = (
            CircuitBreaker("redis", redis_url=redis_url, namespace="repaired", refresh_interval=30)
            for _ in range(3)
        )
        try:
            for breaker in (app, other, newcomer):
                breaker.initialize()
                assert wait_for(redis_backend(breaker).refresher.read_done.is_set)
            for _ in range(3):
                app.record_failure("pg", "slow")  # (a few writes: the stored version grows)
            app.force_open("pg", "failover")
            assert not other.is_available("pg")  # it reads it: forced open
            for breaker in (app, other):
                redis_backend(breaker).refresher.refresh()
                redis_backend(breaker).listener.stop(5)  # (their rounds, not notices, find it)
            redis_server.client().hset(redis_backend(app).keys.for_service("pg")[0], "ro", "garbage")
            assert newcomer.state("pg").state is CircuitState.CLOSED  # its read rewrote it afresh
            for breaker in (app, other):
                redis_backend(breaker).refresher.refresh()  # the loss, reported
                redis_backend(breaker).refresher.refresh()  # the override, written back
            assert newcomer.state("pg").state is CircuitState.FORCED_OPEN
            assert mirror_state(app, "pg") is mirror_state(other, "pg") is CircuitState.FORCED_OPEN
        finally:
            for breaker in (app, other, newcomer):
                breaker.close()

    def test_a_newer_reply_during_the_round_is_not_taken_for_a_loss(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failure on an open circuit lands (and is mirrored) while the refresher's round reads
        its stored version: the version read is older than the mirror's by then, not a loss."""
        app = CircuitBreaker(
            "redis", redis_url=redis_url, namespace="newer", refresh_interval=30,
            default_policy=ServicePolicy(max_failures=1, open_seconds=60),
        )  # fmt: skip
        app.initialize()
        try:
            assert wait_for(redis_backend(app).refresher.read_done.is_set)
            app.record_failure("pg", "down")  # open: watched by each round
            redis_backend(app).refresher.refresh()
            execute = redis.client.Pipeline.execute
            landed: list[bool] = []

            test_thread = threading.current_thread()

            def read_then_a_failure_lands(self: Any, *args: Any, **kwargs: Any) -> Any:
                replies = execute(self, *args, **kwargs)
                if not landed and threading.current_thread() is test_thread:
                    landed.append(True)
                    app.record_failure("pg", "still down")  # (the version grows meanwhile)
                return replies

            with capture_events(app) as events:
                monkeypatch.setattr(redis.client.Pipeline, "execute", read_then_a_failure_lands)
                redis_backend(app).refresher.refresh()
                monkeypatch.undo()
            assert landed
            assert EventKind.STORAGE_RESET not in [e.kind for e in events]
        finally:
            app.close()

    def test_a_watched_key_of_the_wrong_type_affects_only_its_circuit(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """A string where a forced circuit's state hash belongs: the round goes on (no outage,
        every other circuit shared), and that circuit's next read repairs it, still forced."""
        app = CircuitBreaker("redis", redis_url=redis_url, namespace="wrongtype", refresh_interval=30)
        app.initialize()
        try:
            assert wait_for(redis_backend(app).refresher.read_done.is_set)
            # (the round is what this is about: no listener read of its own notice, which may
            # still carry the state from before force_open, meets the garbage first)
            redis_backend(app).listener.stop(5)
            app.force_open("pg", "failover")
            redis_server.client().set(redis_backend(app).keys.for_service("pg")[0], "garbage")
            with capture_events(app) as events:
                redis_backend(app).refresher.refresh()
                assert app.storage_available
                assert app.state("pg").state is CircuitState.FORCED_OPEN
            assert EventKind.STORAGE_DEGRADED not in [e.kind for e in events]
        finally:
            app.close()


class TestOperatorDuringARestore:
    """After a data loss each process writes the overrides it knew again: an operator's change
    made meanwhile is never undone by that restore."""

    def _restore_under_way(self, redis_url: str, namespace: str) -> tuple[CircuitBreaker, RedisBackend]:
        app = CircuitBreaker("redis", redis_url=redis_url, namespace=namespace, refresh_interval=30)
        app.initialize()
        backend = redis_backend(app)
        assert wait_for(backend.refresher.read_done.is_set)
        # (the round the subscription asks for may still come: its restore is the test's own here)
        backend.refresher.stop(5)
        app.force_open("pg", "failover")
        backend.overrides.lost()  # the refresher found the store emptied: pg is to be written again
        return app, backend

    def test_a_reset_made_before_the_restore_writes_is_kept(self, redis_url: str) -> None:
        app, backend = self._restore_under_way(redis_url, "restore-reset")
        try:
            app.reset("pg")
            backend.overrides.restore(backend._handle, everything=True)
            assert app.state("pg").state is CircuitState.CLOSED
            assert backend.store.client().hget(backend.keys.forced, "pg") is None
        finally:
            app.close()

    def test_a_reset_made_after_a_flush_is_kept(self, redis_url: str, redis_server: RedisServer) -> None:
        """The store is emptied, an operator resets the circuit before this process notices,
        then it notices: the reset stands (its reply is not taken for a loss, nor undone)."""
        app = CircuitBreaker("redis", redis_url=redis_url, namespace="flush-reset", refresh_interval=30)
        app.initialize()
        try:
            assert wait_for(redis_backend(app).refresher.read_done.is_set)
            for _ in range(3):
                app.record_failure("pg", "slow")  # (a few writes: the stored version grows)
            app.force_open("pg", "failover")
            redis_server.client().flushall()
            app.reset("pg")
            assert mirror_state(app, "pg") is CircuitState.CLOSED
            redis_backend(app).refresher.refresh()  # it notices the loss now
            redis_backend(app).refresher.refresh()
            assert app.state("pg").state is CircuitState.CLOSED
            assert mirror_state(app, "pg") is CircuitState.CLOSED
        finally:
            app.close()

    def test_a_change_that_fails_leaves_the_restore_and_the_registry(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A disable that could not be written to the circuit's keys raises, and leaves what was
        there: the earlier override in the registry, and its pending restore."""
        app, backend = self._restore_under_way(redis_url, "restore-failed")
        try:
            circuit = backend.store.circuits["pg"]
            monkeypatch.setattr(circuit, "run", lambda *args, **kwargs: None)  # the script fails
            with pytest.raises(CircuitBackendError):
                app.disable("pg", "noisy alarm")
            monkeypatch.undo()
            client = backend.store.client()
            assert client.hget(backend.keys.forced, "pg") == b"force_open:failover"
            assert "pg" in backend.overrides.pending
            backend.overrides.restore(backend._handle, everything=True)
            assert app.state("pg").state is CircuitState.FORCED_OPEN
        finally:
            app.close()

    def test_a_disable_made_before_the_restore_writes_is_kept(self, redis_url: str) -> None:
        app, backend = self._restore_under_way(redis_url, "restore-disable")
        try:
            app.disable("pg", "noisy alarm")
            backend.overrides.restore(backend._handle, everything=True)
            assert app.state("pg").state is CircuitState.DISABLED
            assert backend.store.client().hget(backend.keys.forced, "pg") == b"disable:noisy alarm"
        finally:
            app.close()


class TestRegistryReadDuringAChange:
    def test_a_registry_read_from_before_a_change_does_not_forget_it(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A refresher round reads the operators' registry, an operator forces the circuit open,
        then the round takes what it read: the override stays known (a failed change after it
        puts it back in the registry instead of erasing it)."""
        app = CircuitBreaker("redis", redis_url=redis_url, namespace="registry-race", refresh_interval=30)
        app.initialize()
        try:
            backend = redis_backend(app)
            assert wait_for(backend.refresher.read_done.is_set)
            backend.refresher.stop(5)  # (its rounds run here, one at a time)
            overrides = backend.overrides
            read = overrides.read

            def read_after_a_change(raw: Any, mark: int) -> None:
                if "pg" not in overrides.known:
                    app.force_open("pg", "failover")  # lands between the registry's read and its use
                read(raw, mark)

            monkeypatch.setattr(overrides, "read", read_after_a_change)
            backend.refresher.check_epoch(backend.store.client())
            monkeypatch.undo()
            assert overrides.known["pg"].op == "force_open"
            monkeypatch.setattr(backend.store.circuits["pg"], "run", lambda *args, **kwargs: None)
            with pytest.raises(CircuitBackendError):
                app.disable("pg", "noisy alarm")  # the script fails: the registry keeps the earlier
            monkeypatch.undo()
            assert backend.store.client().hget(backend.keys.forced, "pg") == b"force_open:failover"
            backend.refresher.check_epoch(backend.store.client())  # a fresh read takes the registry
            assert overrides.known["pg"].op == "force_open"
        finally:
            app.close()

    def test_a_registry_read_begun_while_a_change_is_sent_does_not_forget_it(
        self, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The round takes its mark while the operator's write is on its way and reads the
        registry before that write lands: what it read is older than the change, and ignored."""
        app = CircuitBreaker("redis", redis_url=redis_url, namespace="registry-race-2", refresh_interval=30)
        app.initialize()
        try:
            backend = redis_backend(app)
            assert wait_for(backend.refresher.read_done.is_set)
            backend.refresher.stop(5)
            overrides, client = backend.overrides, backend.store.client()
            send = overrides._send
            seen: dict[str, Any] = {}

            def read_then_send(*args: Any) -> None:
                seen["mark"], seen["registry"] = overrides.mark(), client.hgetall(backend.keys.forced)
                send(*args)

            monkeypatch.setattr(overrides, "_send", read_then_send)
            app.force_open("pg", "failover")
            monkeypatch.undo()
            assert seen["registry"] == {}  # read before the write landed
            overrides.read(seen["registry"], seen["mark"])
            assert overrides.known["pg"].op == "force_open"
        finally:
            app.close()


class TestFirstSuccessCounts:
    def test_a_first_success_on_an_unread_circuit_counts_in_the_rate_window(self, redis_url: str) -> None:
        """A process's first record_success, before it read the circuit, counts in the fleet's
        rate window as it does on the local backend: two successes are two calls."""
        policy = {"failure_rate_threshold": 0.5, "minimum_calls": 10, "window_seconds": 60}
        local = CircuitBreaker(default_policy=ServicePolicy(**policy))  # type: ignore[arg-type]
        shared = _breaker(redis_url, "first", **policy)
        try:
            for breaker in (local, shared):
                breaker.record_success("svc")
                breaker.record_success("svc")
            assert wait_for(lambda: shared.state("svc").calls == 2, 5)
            assert local.state("svc").calls == 2
        finally:
            shared.close()


class TestReadyBackend:
    def test_a_ready_backend_reports_to_the_breakers_listeners(self, redis_url: str) -> None:
        """CircuitBreaker(RedisBackend(...)) delivers the same events as the local backend when a
        circuit opens (listeners, so metrics, keep working), on the breaker's clock."""
        heard: dict[str, list[str]] = {}
        clock = ManualClock()
        for name, backend in (("local", "local"), ("redis", RedisBackend(redis_url, namespace="ready"))):
            breaker = CircuitBreaker(backend, default_policy=ServicePolicy(max_failures=2), clock=clock)
            events: list[CircuitEvent] = []
            breaker.add_listener(events.append)
            breaker.initialize()
            try:
                for _ in range(2):
                    breaker.record_failure("svc", "boom")
                heard[name] = [e.kind.value for e in events]
                if name == "redis":
                    assert redis_backend(breaker).clock is clock
            finally:
                breaker.close()
        assert heard["redis"] == heard["local"]
        assert EventKind.STATE_CHANGE.value in heard["redis"]


class TestUserStringsAreData:
    def test_a_reason_that_looks_like_a_marker_comes_back_as_written(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """A force_open reason that starts with the registry's old disable marker is restored after
        a FLUSHALL as a forced-open circuit with that very reason: no call runs."""
        reason = "\x1fdisabled\x1fnot really"
        app = _breaker(redis_url, "marks")
        operator = _breaker(redis_url, "marks")
        try:
            operator.force_open("pg", reason)
            assert wait_for(lambda: "pg" in redis_backend(app).overrides.known, 2)
            redis_server.client().flushall()
            newcomer = _breaker(redis_url, "marks")
            assert wait_for(lambda: newcomer.state("pg").state is CircuitState.FORCED_OPEN, 5)
            assert newcomer.state("pg").last_failure["reason"] == reason  # type: ignore[index]
            ran: list[int] = []
            with contextlib.suppress(CircuitOpenError):
                newcomer.execute("pg", lambda: ran.append(1))
            assert ran == []
            newcomer.close()
        finally:
            app.close()
            operator.close()

    def test_a_service_named_like_the_probe_keeps_its_state(self, redis_url: str) -> None:
        """A service named '__tnm_probe__' (or '%probe') is a service like any other: another
        process's initialize() leaves its forced-open state alone."""
        operator = _breaker(redis_url, "probe")
        try:
            for name in ("__tnm_probe__", "%probe"):
                operator.force_open(name, "maintenance")
            newcomer = _breaker(redis_url, "probe")
            for name in ("__tnm_probe__", "%probe"):
                assert newcomer.state(name).state is CircuitState.FORCED_OPEN
            newcomer.close()
        finally:
            operator.close()

    def test_an_override_recorded_by_an_earlier_release_is_still_read(
        self, redis_url: str, redis_server: RedisServer
    ) -> None:
        """A registry entry in the earlier format (marked disable) is still restored as a disable."""
        app = _breaker(redis_url, "legacy")
        try:
            app.is_available("pg")
            redis_server.client().hset(redis_backend(app).keys.forced, "pg", "\x1fdisabled\x1fops")
            assert wait_for(lambda: "pg" in redis_backend(app).overrides.known, 2)
            redis_server.client().delete(*redis_backend(app).keys.for_service("pg", cluster=True))
            redis_server.client().delete(redis_backend(app).keys.epoch)  # a data loss, for this process
            assert wait_for(lambda: app.state("pg").state is CircuitState.DISABLED, 5)
        finally:
            app.close()


@pytest.mark.slow
class TestThresholdBound:
    def test_calls_reaching_a_down_service_stay_within_the_bound(
        self, redis_url: str, tmp_path: Path
    ) -> None:
        """Six callers (three processes, two threads each) start on a down service at once: at
        least max_failures and at most max_failures + callers - 1 calls reach it (each other
        caller has at most one call admitted before it learns of the trip)."""
        processes, threads, max_failures = 3, 2, 3
        go = tmp_path / "go"
        extra = (
            "down",
            json.dumps({"max_failures": max_failures, "open_seconds": 60}),
            str(threads),
            str(go),
        )
        with traffic(redis_url, "bound", 1.0, processes, worker="call_worker", extra=extra) as workers:
            go.touch()
            results = workers.results()
        reached = sum(len(result["ran"]) for result in results)
        assert max_failures <= reached <= max_failures + processes * threads - 1
        for result in results:
            assert result["foreign"] == []
            assert result["rejected"]


class TestEngine:
    def test_the_server_is_the_engine_asked_for(self, redis_server: RedisServer) -> None:
        """The session's server is the engine TNM_TEST_ENGINE names (so a Valkey pass runs on Valkey)."""
        info = redis_server.client().info("server")
        assert ("valkey_version" in info) is (ENGINE == "valkey")
