"""One process of a fleet calling one service at 50 calls a second, for fleet-decision tests.

Run as ``python -m tests.redis.fleet_worker URL NAMESPACE SECONDS POLICY_JSON SICK RECOVER GO``.
It builds its breaker, prints ``ready``, waits (at most 30 s) until the file GO exists (so
a fleet starts calling together, as in a deploy), then calls the service every 20 ms for
SECONDS. A call fails (``ConnectionError``, this process's own trouble) while the file SICK
exists and the file RECOVER does not. Then it prints one JSON line: every call as
``[wall time, outcome, opened_by]`` (outcome ``ok``, ``fail`` or ``rejected``; ``opened_by``
from the rejection), and any other exception a caller got (``foreign``, must be empty).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy


def main() -> None:
    url, namespace, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    policy = ServicePolicy(**json.loads(sys.argv[4]))
    sick, recover, go = sys.argv[5], sys.argv[6], sys.argv[7]
    breaker = CircuitBreaker("redis", redis_url=url, namespace=namespace, default_policy=policy)
    breaker.initialize()
    calls: list[list[Any]] = []
    foreign: list[str] = []

    def run() -> None:
        if os.path.exists(sick) and not os.path.exists(recover):
            raise ConnectionError("this process's own trouble")

    print("ready", flush=True)
    waited = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < waited:
        time.sleep(0.002)
    start = time.monotonic()
    deadline = start + seconds
    n = 0
    while time.monotonic() < deadline:
        try:
            breaker.execute("svc", run)
            calls.append([time.time(), "ok", None])
        except ConnectionError:
            calls.append([time.time(), "fail", None])
        except CircuitOpenError as exc:
            calls.append([time.time(), "rejected", exc.opened_by])
        except Exception as exc:
            foreign.append(repr(exc))
        n += 1
        time.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
    snapshot = breaker.state("svc").to_dict()
    breaker.close()
    print(json.dumps({"calls": calls, "foreign": foreign[:5], "snapshot": snapshot}), flush=True)


if __name__ == "__main__":
    main()
