"""Fleet decisions with one sick process: real processes on a real redis-server, started as in a deploy."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .helpers import ROOT

RATE_50 = {
    "window_seconds": 10,
    "open_seconds": 10,
    "max_failures": None,
    "failure_rate_threshold": 0.5,
    "minimum_calls": 20,
}


class Fleet:
    """``tests/redis/fleet_worker.py`` processes: each fails its calls while its SICK file exists."""

    def __init__(
        self, url: str, namespace: str, seconds: float, processes: int, policy: dict[str, Any]
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-"))
        self.go = self.dir / "go"
        self.recover = self.dir / "recover"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.redis.fleet_worker",
                    url,
                    namespace,
                    str(seconds),
                    json.dumps(policy),
                    str(self.sick_file(i)),
                    str(self.recover),
                    str(self.go),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(processes)
        ]

    def sick_file(self, index: int) -> Path:
        return self.dir / f"sick-{index}"

    def _line(self, worker: subprocess.Popen[str], timeout: float) -> str:
        assert worker.stdout is not None
        ready, _, _ = select.select([worker.stdout], [], [], timeout)
        assert ready, "worker did not answer in time"
        return worker.stdout.readline().strip()

    def start(self) -> None:
        for worker in self.workers:
            assert self._line(worker, 30) == "ready"
        self.go.touch()

    def results(self, timeout: float = 60) -> list[dict[str, Any]]:
        results = [json.loads(self._line(worker, timeout)) for worker in self.workers]
        for result in results:
            assert result["foreign"] == []
        return results

    def stop(self) -> None:
        for worker in self.workers:
            worker.kill()
            worker.wait(10)
            if worker.stdout is not None:
                worker.stdout.close()


@contextmanager
def fleet(
    url: str, namespace: str, seconds: float, processes: int, policy: dict[str, Any]
) -> Iterator[Fleet]:
    running = Fleet(url, namespace, seconds, processes, policy)
    try:
        yield running
    finally:
        running.stop()


def outcomes(result: dict[str, Any], outcome: str) -> list[list[Any]]:
    return [call for call in result["calls"] if call[1] == outcome]


@pytest.mark.slow
class TestOneSickProcessAtADeploy:
    @pytest.mark.parametrize("deploy", range(3))
    def test_a_50_percent_rate_never_opens_for_the_healthy_three(self, redis_url: str, deploy: int) -> None:
        """4 processes started together, one failing every call: the fleet's 25% never opens a 50% circuit."""
        with fleet(redis_url, f"deploy{deploy}", 3.0, 4, RATE_50) as running:
            running.sick_file(3).touch()
            running.start()
            results = running.results()
        healthy, sick = results[:3], results[3]
        assert [len(outcomes(r, "rejected")) for r in healthy] == [0, 0, 0]
        assert all(len(outcomes(r, "ok")) > 100 for r in healthy)
        assert sick["snapshot"]["failing_processes"] in (1, None)  # None: read while isolated alone
        assert [r["snapshot"]["state"] for r in healthy] == ["closed"] * 3


COUNT_5 = {"window_seconds": 10, "open_seconds": 1, "max_failures": 5}


@pytest.mark.slow
class TestTheSickProcessIsIsolated:
    @pytest.mark.parametrize("policy", [COUNT_5, {**RATE_50, "open_seconds": 1}], ids=["count", "rate"])
    def test_the_sick_process_alone_is_rejected_within_its_threshold(
        self, redis_url: str, policy: dict[str, Any]
    ) -> None:
        """One of 4 processes fails every call: it alone is isolated, within its own threshold."""
        with fleet(redis_url, f"isolate-{len(policy)}", 3.0, 4, policy) as running:
            running.sick_file(3).touch()
            running.start()
            results = running.results()
        healthy, sick = results[:3], results[3]
        assert [len(outcomes(r, "rejected")) for r in healthy] == [0, 0, 0]
        calls = sick["calls"]
        first = next(i for i, call in enumerate(calls) if call[1] == "rejected")
        threshold = policy.get("max_failures") or policy["minimum_calls"]
        assert first <= threshold  # failing calls before its first rejection
        rejected = outcomes(sick, "rejected")
        assert {call[2] for call in rejected} == {"process"}
        assert len(rejected) > len(calls) / 2  # trials only, once its open time is over
