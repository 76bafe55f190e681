"""One application process for the fault suite: steady traffic through a Redis-backed breaker.

Run as ``python -m tests.redis.fault_worker URL NAMESPACE SECONDS``. It prints ``ready``
once its circuits are warm, runs traffic for SECONDS, then prints one JSON line:

* ``forced_runs``: calls that ran into the service an operator forced open (must be 0);
* ``down_runs``: calls that reached the service that is down (its circuit is open);
* ``healthy_ok`` / ``healthy_rejected``: calls to the healthy service;
* ``foreign``: any exception a caller got that is neither the service's own nor
  ``CircuitOpenError`` (must be empty);
* ``tripped_seen_at``: wall time when this process first saw ``tripped`` unavailable.
"""

from __future__ import annotations

import json
import sys
import time

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy


def main() -> None:
    url, namespace, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace=namespace,
        default_policy=ServicePolicy(max_failures=3, window_seconds=60, open_seconds=60),
        refresh_interval=0.2,
        socket_timeout=0.2,
    )
    breaker.initialize()
    counts = {"forced_runs": 0, "down_runs": 0, "healthy_ok": 0, "healthy_rejected": 0}
    foreign: list[str] = []
    tripped_seen_at: float | None = None

    def forced() -> None:
        counts["forced_runs"] += 1

    def down() -> None:
        counts["down_runs"] += 1
        raise ConnectionError("down")

    def call(service: str, func: object) -> bool:
        """True if the call was rejected by the circuit."""
        try:
            breaker.execute(service, func)  # type: ignore[arg-type]
        except CircuitOpenError:
            return True
        except ConnectionError:
            pass
        except Exception as exc:
            foreign.append(f"{service}: {exc!r}")
        return False

    for service in ("forced", "down", "healthy", "tripped"):
        breaker.is_available(service)  # warm: every mirror knows its service
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        call("forced", forced)
        call("down", down)
        if call("healthy", lambda: 1):
            counts["healthy_rejected"] += 1
        else:
            counts["healthy_ok"] += 1
        # Only looked at (a call that succeeded would reset the tripper's failure count).
        if tripped_seen_at is None and not breaker.is_available("tripped"):
            tripped_seen_at = time.time()
        time.sleep(0.001)
    breaker.close()
    print(json.dumps({**counts, "foreign": foreign[:5], "tripped_seen_at": tripped_seen_at}), flush=True)


if __name__ == "__main__":
    main()
