"""The drill's settings, and the one policy every contender is given."""

from __future__ import annotations

from dataclasses import dataclass, field

CONTENDERS = ("none", "circuitbreaker", "pybreaker-redis", "tnm-local", "tnm-redis")
"""Every contender, in the order they run and are reported."""

SCENARIOS = ("stall", "error")
"""stall: the upstream holds each request, then answers 503; error: it answers 503 at once."""

WORKER_TIMEOUT_EXTRA = 2.0
"""A worker waits for the upstream this much longer than a stall holds a request, so a stall
reaches the worker as the upstream's 503, not as the worker's own timeout."""

CALLER_TIMEOUT = 5.0
"""How long the load generator's callers wait for the app before counting a timeout."""

TRIAL_ALLOWANCE = 0.25
"""Time granted to one half-open trial against the returned upstream (the trial's round trip and
the news reaching the fleet), in the recovery goal: open_seconds plus this."""


@dataclass(frozen=True)
class Policy:
    """The same policy for every contender, as far as each allows."""

    threshold: int = 5
    open_seconds: float = 5.0

    def describe(self) -> list[str]:
        return [
            f"policy: open after {self.threshold} failures, stay open {self.open_seconds:g} s, "
            "then one half-open trial",
            f"  tnm-local, tnm-redis: ServicePolicy(max_failures={self.threshold}, window_seconds=60, "
            f"open_seconds={self.open_seconds:g}, half_open_max_calls=1) through "
            "AsyncCircuitBreakerTransport (a success while closed resets the count)",
            f"  circuitbreaker: CircuitBreaker(failure_threshold={self.threshold}, "
            f"recovery_timeout={self.open_seconds:g}), per process; its half-open state lets every "
            "call through until one comes back",
            f"  pybreaker-redis: CircuitBreaker(fail_max={self.threshold}, "
            f"reset_timeout={self.open_seconds:g}, state_storage=CircuitRedisStorage), shared; "
            "its half-open state lets every call through until one comes back",
            "  none: the same httpx call, unprotected",
        ]


@dataclass(frozen=True)
class Drill:
    """What one drill runs: the fleet, the load, the outage and the policy."""

    workers: int = 4
    rate: float = 200.0
    outage_seconds: float = 20.0
    warmup_seconds: float = 2.0
    stall_hold_seconds: float = 1.0
    policy: Policy = field(default_factory=Policy)
    scenarios: tuple[str, ...] = SCENARIOS
    contenders: tuple[str, ...] = CONTENDERS
    port: int = 0

    @property
    def after_seconds(self) -> float:
        """Traffic after the upstream's return: the open time, one trial and room to see it."""
        return self.policy.open_seconds + 2.0

    @property
    def run_seconds(self) -> float:
        return self.warmup_seconds + self.outage_seconds + self.after_seconds

    def hold(self, scenario: str) -> float:
        """How long the upstream holds a request during this scenario's outage."""
        return self.stall_hold_seconds if scenario == "stall" else 0.0


QUICK = {"outage_seconds": 6.0, "warmup_seconds": 1.0, "open_seconds": 2.0}
DEFAULT = {"outage_seconds": 20.0, "warmup_seconds": 2.0, "open_seconds": 5.0}
