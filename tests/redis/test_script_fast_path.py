"""The script's fast path (a failure of a closed circuit under a count trigger, straight through)
against its general path: random sequences of runs, policy changes, time and corrupt data, sent to
``circuit.lua`` and to the same script without the fast path, store, return and publish the same."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.exceptions import ResponseError

from tnm.circuit.backends.redis._script import SCRIPT

FAST_START = "-- FAST: "
FAST_END = "-- (end of FAST)\n"
GENERAL_SCRIPT = SCRIPT[: SCRIPT.index(FAST_START)] + SCRIPT[SCRIPT.index(FAST_END) + len(FAST_END) :]
"""circuit.lua without its fast path: every run takes the general path."""

FIELDS = ["s", "ou", "ro", "ts", "lr", "lt", "mf", "wm", "nt", "fc", "v", "ob", "of", "svc", "xp", "pd"]
SIDES = ("fast", "general")
START_MS = 1_700_000_000_000

runs = st.tuples(
    st.just("run"),
    st.sampled_from(
        ["failure"] * 14
        + ["success", "acquire", "release", "reset", "force_open", "disable", "recheck", "read"]
        + ["touch", "slow", "hold_open", "policy", "decide"]
    ),
    st.sampled_from(["a", "b", ""]),  # the reporter
    st.sampled_from(["timeout", "refused"]),
    st.sampled_from([False] * 5 + [True]),  # open_on
    st.sampled_from([""] * 5 + ["failures:3000"]),  # isolating
    st.booleans(),  # with the last trial's token
    st.sampled_from([False, False, True]),  # slow
    st.sampled_from([0, 0, 3]),  # the caller's successes not yet in the window
)
policies = st.tuples(
    st.just("policy"),
    st.sampled_from([0, 1, 2, 3, 6]),  # max_failures
    st.sampled_from([1000, 5000, 5000, 0]),  # window_ms
    st.sampled_from([1, 1, 1, 2]),  # quorum
    st.sampled_from(["", "0.5"]),  # failure rate
    st.sampled_from(["", "", "0.5"]),  # slow-call rate
    st.sampled_from([1, 2, 3, 10]),  # minimum calls
)
steps = st.tuples(st.just("advance"), st.sampled_from([0, 1, 400, 1500, 7000]))
corruptions = st.tuples(
    st.just("corrupt"),
    st.sampled_from(
        ["field", "field", "hdel", "del state", "del failures", "failures type", "reporters type"]
    ),
    st.sampled_from(FIELDS),
    st.sampled_from(["x", "", "1.5", "-3", "inf", "closed", "open", "7"]),
)
FAILURE = ("run", "failure", "a", "timeout", False, "", False, False, 0)
POLICY = {
    "max_failures": 10**6,
    "window_ms": 60_000,
    "quorum": 1,
    "rate": "",
    "slow_rate": "",
    "minimum_calls": 1,
}
sequences = st.lists(st.one_of(runs, runs, runs, runs, policies, steps, corruptions), min_size=1, max_size=40)


class Pair:
    """The same circuit twice, one per script, each with its own keys, channel and counter."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.shas = {"fast": client.script_load(SCRIPT), "general": client.script_load(GENERAL_SCRIPT)}
        self.reset()

    def reset(self) -> None:
        """A new example: an empty store, the first time and policy, no trial."""
        self.client.flushall()
        self.now: int | None = START_MS
        self.policy: dict[str, Any] = dict(POLICY, max_failures=3, window_ms=5000)
        self.token = 0

    @staticmethod
    def keys(side: str) -> list[str]:
        names = ("state", "failures", "permits", "calls", "reporters", "changes")
        return [f"{side}:{name}" for name in names]

    def args(
        self,
        side: str,
        op: str,
        reporter: str,
        reason: str,
        trip: bool,
        isolating: str,
        token: int,
        slow: bool = False,
        carried: int = 0,
    ) -> list[Any]:
        p = self.policy
        return [
            op, self.now if self.now is not None else "", p["max_failures"], p["window_ms"], 2000, 2, 60000,
            1, 1, 3000, 300000, f"{side}:channel", "svc", token, reason, "closed", "",
            p["rate"], p["slow_rate"], p["minimum_calls"], 250, 20, "1" if slow else "0", carried,
            "1" if trip else "0", reporter, p["quorum"], isolating,
        ]  # fmt: skip

    def run(
        self,
        op: str,
        reporter: str,
        reason: str,
        trip: bool,
        isolating: str,
        with_token: bool,
        slow: bool = False,
        carried: int = 0,
    ) -> list[Any]:
        replies = []
        token = self.token if with_token else 0
        for side in SIDES:
            args = self.args(side, op, reporter, reason, trip, isolating, token, slow, carried)
            try:
                replies.append(self.client.evalsha(self.shas[side], 6, *self.keys(side), *args))
            except ResponseError as exc:
                replies.append(f"error: {exc}")
        if op == "acquire" and isinstance(replies[0], list) and replies[0][4] > 0:
            self.token = replies[0][4]
        return replies

    def corrupt(self, kind: str, field: str, value: str) -> None:
        for side in SIDES:
            state, failures, _, _, reporters, _ = self.keys(side)
            if kind == "field":
                self.client.hset(state, field, value)
            elif kind == "hdel":
                self.client.hdel(state, field)
            elif kind == "del state":
                self.client.delete(state)
            elif kind == "del failures":
                self.client.delete(failures)
            elif kind == "failures type":
                self.client.delete(failures)
                self.client.set(failures, value)
            else:
                self.client.delete(reporters)
                self.client.set(reporters, value)

    def stored(self, side: str) -> dict[str, Any]:
        """What the side's keys hold, and how long they live (in whole seconds: the two runs are
        a moment apart)."""
        c = self.client
        state, failures, permits, calls, reporters, changes = self.keys(side)
        found: dict[str, Any] = {}
        for key in (state, failures, permits, calls, reporters, changes):
            kind = c.type(key).decode()
            name = key.split(":", 1)[1]
            if kind == "hash":
                found[name] = c.hgetall(key)
            elif kind == "zset":
                found[name] = c.zrange(key, 0, -1, withscores=True)
            elif kind != "none":
                found[name] = c.get(key)
            ttl = c.pttl(key)
            found[name + " ttl"] = ttl if ttl < 0 else round(ttl / 1000)
        return found


@pytest.fixture
def pair(redis_url: str) -> Pair:
    return Pair(redis.Redis.from_url(redis_url))


def _apply(pair: Pair, step: tuple[Any, ...]) -> list[Any] | None:
    if step[0] == "run":
        return pair.run(*step[1:])
    if step[0] == "policy":
        names = ("max_failures", "window_ms", "quorum", "rate", "slow_rate", "minimum_calls")
        pair.policy = dict(zip(names, step[1:], strict=True))
    elif step[0] == "advance":
        pair.now += step[1]
    else:
        pair.corrupt(*step[1:])
    return None


def _messages(pubsub: Any, count: int) -> list[Any]:
    """The side's notices, once ``count`` of them arrived (bounded wait)."""
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message is not None and message["type"] == "message":
            got.append(message["data"])
    return got


@pytest.mark.timeout(300)  # about 10 s alone; a busy machine may take several times that
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(sequence=sequences)
@example(  # a field the general path writes back, missing
    sequence=[("run", "acquire", "a", "", False, "", False, False, 0), ("corrupt", "hdel", "ob", ""), FAILURE]
)
@example(  # a rate the failure meets, and successes carried into the window
    sequence=[
        ("policy", 0, 5000, 1, "0.5", "", 4),
        ("run", "acquire", "a", "", False, "", False, False, 0),
        ("run", "failure", "a", "timeout", False, "", False, False, 3),
        FAILURE,
        FAILURE,
    ]
)
@example(sequence=[("policy", 3, 0, 1, "", "", 1), FAILURE, FAILURE])  # a window under a millisecond
@example(  # failures that left the window, trimmed to the newest max_failures
    sequence=[("policy", 3, 1000, 1, "", "", 1), FAILURE, FAILURE, ("advance", 1500), FAILURE, FAILURE]
)
def test_the_fast_path_stores_returns_and_publishes_what_the_general_path_does(
    pair: Pair, sequence: list[tuple[Any, ...]]
) -> None:
    """On a caller's clock (the script's time is the caller's, so both runs see the same)."""
    client = pair.client
    pair.reset()
    pubsubs = {side: client.pubsub(ignore_subscribe_messages=True) for side in SIDES}
    for side, pubsub in pubsubs.items():
        pubsub.subscribe(f"{side}:channel")
    try:
        for step in sequence:
            replies = _apply(pair, step)
            if replies is not None:
                assert replies[0] == replies[1], step
            assert pair.stored("fast") == pair.stored("general"), step
        counts = [int(client.get(f"{side}:changes") or 0) for side in SIDES]
        assert counts[0] == counts[1]
        assert _messages(pubsubs["fast"], counts[0]) == _messages(pubsubs["general"], counts[1])
    finally:
        for pubsub in pubsubs.values():
            pubsub.close()


@pytest.mark.parametrize(
    "policy",
    [{"max_failures": 10**6}, {"max_failures": 0, "rate": "1.0", "minimum_calls": 10**6}],
    ids=["count", "rate"],
)
def test_the_fast_path_takes_the_common_failure(pair: Pair, redis_url: str, policy: dict[str, Any]) -> None:
    """The comparison above means something only if the fast path runs: a failure of a closed
    circuit its process wrote before counts the window first (``MONITOR`` shows the script's
    commands in order); the general path first looks whether failures exist."""
    pair.policy = dict(POLICY, **policy)
    pair.run("acquire", "a", "", False, "", False)  # (the first write stores every field)
    pair.run("failure", "a", "timeout", False, "", False)
    watcher = redis.Redis.from_url(redis_url, socket_timeout=10)
    first: dict[str, str] = {}
    for side in SIDES:
        with watcher.monitor() as monitor:
            args = pair.args(side, "failure", "a", "timeout", False, "", 0)
            pair.client.evalsha(pair.shas[side], 6, *pair.keys(side), *args)
            seen = []
            while "PTTL" not in seen and len(seen) < 50:  # (the run's last command)
                command = monitor.next_command()
                if command["client_type"] == "lua":
                    seen.append(command["command"].split()[0].upper())
        first[side] = seen[1]  # after the state's HMGET
    assert first == {"fast": "ZCOUNT", "general": "EXISTS"}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    sequence=st.lists(
        st.sampled_from(["failure", "failure", "failure", "success", "acquire", "read"]),
        min_size=1,
        max_size=25,
    )
)
def test_on_the_servers_clock_the_expiry_and_notices_agree(pair: Pair, sequence: list[str]) -> None:
    """On Redis's own clock a write pushes the keys' expiry only when it falls due: both paths
    store and publish the same, times aside (the two runs are a moment apart)."""
    pair.reset()
    pair.now = None
    pair.policy = dict(POLICY, window_ms=3_600_000)
    timeless = {b"lt", b"xp", b"v"}
    for op in sequence:
        fast, general = pair.run(op, "a", "timeout", False, "", False)
        timed = (3, 7)  # now, and the last failure's time
        assert [v for i, v in enumerate(fast) if i not in timed] == [
            v for i, v in enumerate(general) if i not in timed
        ]
        stored = [pair.stored(side) for side in SIDES]
        for found in stored:
            found["state"] = {k: v for k, v in found.get("state", {}).items() if k not in timeless}
            found["failures"] = len(found.get("failures", []))
            found["reporters"] = [member for member, _ in found.get("reporters", [])]
        assert stored[0] == stored[1], op
