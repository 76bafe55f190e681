"""The pytest plugin of tnm-circuit-core, proven on users' test files run by pytester."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest
from packaging.requirements import Requirement

pytest_plugins = ["pytester"]


# Options for the users' runs: no cache files, and pytest-asyncio's setting made explicit.
OPTIONS = ("-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function")


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    return {k: v for k, v in result.parseoutcomes().items() if k in ("passed", "failed", "errors")}


class TestRegistration:
    def test_the_core_registers_the_plugin(self) -> None:
        """tnm-circuit-core declares the plugin under the pytest11 entry point, so installing it is enough."""
        points = importlib.metadata.distribution("tnm-circuit-core").entry_points
        assert [(p.group, p.name, p.value) for p in points if p.group == "pytest11"] == [
            ("pytest11", "tnm_circuit", "tnm.circuit_pytest")
        ]

    def test_pytest_and_fakeredis_are_not_runtime_dependencies(self) -> None:
        """The core requires nothing to run; fakeredis comes only with the testing extra, pytest never."""
        requires = importlib.metadata.requires("tnm-circuit-core") or []
        extras = [Requirement(r).marker for r in requires]
        assert None not in extras  # every requirement belongs to an extra
        assert not [r for r in requires if Requirement(r).name == "pytest"]
        fakeredis = [Requirement(r) for r in requires if Requirement(r).name == "fakeredis"]
        assert [str(r.marker) for r in fakeredis] == ['extra == "testing"']
        assert fakeredis[0].extras == {"lua"}

    def test_the_plugin_imports_only_what_a_test_asks_for(self, pytester: pytest.Pytester) -> None:
        """A fresh pytest process loads the plugin without tnm.circuit or fakeredis, imported when asked."""
        pytester.makepyfile(
            test_a_loaded="""
            import sys

            def test_loaded_lightly(request):
                assert request.config.pluginmanager.has_plugin("tnm_circuit")
                assert "tnm.circuit" not in sys.modules
                assert "fakeredis" not in sys.modules
            """,
            test_b_breakers="""
            import sys

            def test_local_first(make_breaker, circuit_events, circuit_clock):
                make_breaker().record_failure("svc", "x")
                assert "fakeredis" not in sys.modules

            def test_then_shared(make_breaker):
                make_breaker(shared=True).record_failure("svc", "x")
                assert "fakeredis" in sys.modules
            """,
        )
        result = pytester.runpytest_subprocess(*OPTIONS)
        assert outcomes(result) == {"passed": 3}, result.stdout.str()

    def test_the_plugin_can_be_turned_off(self, pytester: pytest.Pytester) -> None:
        """With -p no:tnm_circuit the fixtures are gone, as with any pytest plugin."""
        pytester.makepyfile(
            """
            def test_uses_a_fixture(circuit_clock):
                pass
            """
        )
        result = pytester.runpytest(*OPTIONS, "-p", "no:tnm_circuit")
        assert outcomes(result) == {"errors": 1}, result.stdout.str()
        result.stdout.fnmatch_lines(["*fixture 'circuit_clock' not found*"])


class TestFixtures:
    def test_each_fixture_in_a_users_test(self, pytester: pytest.Pytester) -> None:
        """Each fixture works in a user's tests, and the breakers are closed after each test."""
        pytester.makepyfile(
            """
            import pytest
            from tnm.circuit import CircuitOpenError, CircuitState, EventKind, ServicePolicy
            from tnm.circuit.testing import ManualClock, trip

            MADE = []

            def test_clock(circuit_clock):
                assert isinstance(circuit_clock, ManualClock)

            def test_breaker_on_the_clock(make_breaker, circuit_clock):
                breaker = make_breaker(default_policy=ServicePolicy(max_failures=2, open_seconds=30))
                MADE.append(breaker)
                assert breaker.initialized and breaker.clock is circuit_clock
                trip(breaker, "payments")
                with pytest.raises(CircuitOpenError):
                    breaker.execute("payments", lambda: "charged")
                circuit_clock.advance(30)
                assert breaker.execute("payments", lambda: "charged") == "charged"

            def test_the_breaker_was_closed():
                assert MADE and not MADE[0].initialized

            def test_a_clock_of_its_own(make_breaker, circuit_clock):
                own = ManualClock()
                assert make_breaker(clock=own).clock is own

            def test_events_of_every_breaker(make_breaker, circuit_events):
                a = make_breaker(default_policy=ServicePolicy(max_failures=1))
                b = make_breaker("local", service_policies={"search": ServicePolicy(max_failures=5)})
                a.record_failure("payments", "declined")
                b.record_failure("search", "timeout")
                assert [(e.kind, e.service) for e in circuit_events] == [
                    (EventKind.FAILURE, "payments"),
                    (EventKind.STATE_CHANGE, "payments"),
                    (EventKind.FAILURE, "search"),
                ]
                assert circuit_events[1].state is CircuitState.OPEN
            """
        )
        result = pytester.runpytest(*OPTIONS)
        assert outcomes(result) == {"passed": 5}, result.stdout.str()

    def test_two_shared_breakers_are_two_processes(self, pytester: pytest.Pytester) -> None:
        """With shared=True a trip through one breaker, sync or async, is seen at once by another."""
        pytester.makepyfile(
            """
            import pytest
            from tnm.circuit import CircuitOpenError, CircuitState, EventKind, ServicePolicy
            from tnm.circuit.testing import trip

            POLICY = ServicePolicy(max_failures=3, open_seconds=30)

            def test_trip_in_one_process_is_seen_by_another(make_breaker, circuit_clock, circuit_events):
                web = make_breaker(shared=True, default_policy=POLICY)
                worker = make_breaker(shared=True, default_policy=POLICY)
                assert worker.execute("payments", lambda: "charged") == "charged"
                trip(web, "payments")
                with pytest.raises(CircuitOpenError) as info:
                    worker.execute("payments", lambda: "charged")
                assert info.value.retry_after == 30
                assert web.backend.name == worker.backend.name == "redis"
                assert EventKind.STATE_CHANGE in [e.kind for e in circuit_events]
                circuit_clock.advance(30)
                assert worker.execute("payments", lambda: "charged") == "charged"
                assert web.state("payments").state is CircuitState.CLOSED

            def test_each_test_has_its_own_fake_server(make_breaker):
                assert make_breaker(shared=True).state("payments").state is CircuitState.CLOSED

            @pytest.mark.asyncio
            async def test_async_code_on_shared_breakers(make_breaker):
                async def charge():
                    raise ConnectionError("payments-api refused")

                web = make_breaker(shared=True, default_policy=POLICY)
                worker = make_breaker(shared=True, default_policy=POLICY)
                for _ in range(3):
                    with pytest.raises(ConnectionError):
                        await worker.execute_async("payments", charge)
                with pytest.raises(CircuitOpenError):
                    await web.execute_async("payments", charge)
            """
        )
        result = pytester.runpytest(*OPTIONS)
        assert outcomes(result) == {"passed": 3}, result.stdout.str()

    def test_wrong_user_code_fails_readably(self, pytester: pytest.Pytester) -> None:
        """User code that swallows the open circuit fails the test on the user's own assertion."""
        pytester.makepyfile(
            """
            from tnm.circuit import CircuitOpenError, ServicePolicy
            from tnm.circuit.testing import trip

            def charge(breaker):
                try:
                    return breaker.execute("payments", lambda: 200)
                except CircuitOpenError:
                    return 200  # the bug: an open circuit should answer 503

            def test_charge_answers_503_while_payments_is_down(make_breaker):
                web = make_breaker(shared=True, default_policy=ServicePolicy(max_failures=1))
                worker = make_breaker(shared=True, default_policy=ServicePolicy(max_failures=1))
                trip(worker, "payments")
                assert charge(web) == 503, "an open payments circuit must answer 503"
            """
        )
        result = pytester.runpytest(*OPTIONS)
        assert outcomes(result) == {"failed": 1}, result.stdout.str()
        result.stdout.fnmatch_lines(
            ["*AssertionError: an open payments circuit must answer 503", "*assert 200 == 503"]
        )

    def test_shared_refuses_another_backend(self, pytester: pytest.Pytester) -> None:
        """make_breaker("local", shared=True) fails with an error that says why."""
        pytester.makepyfile(
            """
            def test_mixed_up(make_breaker):
                make_breaker("local", shared=True)
            """
        )
        result = pytester.runpytest(*OPTIONS)
        assert outcomes(result) == {"failed": 1}, result.stdout.str()
        result.stdout.fnmatch_lines(["*InvalidConfigError*backend*builds the redis backend itself*"])

    def test_missing_fakeredis_says_what_to_install(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without fakeredis, shared=True fails naming tnm-circuit-core[testing]; local ones work."""
        monkeypatch.setitem(sys.modules, "fakeredis", None)
        monkeypatch.delitem(sys.modules, "tnm.circuit._fake_redis", raising=False)
        pytester.makepyfile(
            """
            def test_local(make_breaker):
                make_breaker().record_failure("svc", "x")

            def test_shared(make_breaker):
                make_breaker(shared=True)
            """
        )
        result = pytester.runpytest(*OPTIONS)
        assert outcomes(result) == {"passed": 1, "failed": 1}, result.stdout.str()
        result.stdout.fnmatch_lines(["*ImportError: *pip install 'tnm-circuit-core[[]testing[]]'*"])
