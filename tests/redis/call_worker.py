"""One application process calling one service through a Redis-backed breaker, for fault tests.

Run as ``python -m tests.redis.call_worker URL NAMESPACE SECONDS SERVICE POLICY_JSON [THREADS [GO]]``.
The service succeeds, unless its name starts with ``down`` (then every call that runs
raises ``ConnectionError``). It prints ``ready`` once its circuit is warm, waits (at
most 30 s) until the file GO exists if given, calls the service from THREADS threads
(every millisecond each) for SECONDS, then prints one JSON
line: the wall times of calls that ran (``ran``) and of calls rejected (``rejected``),
and any other exception a caller got (``foreign``, must be empty).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from tnm.circuit import CircuitBreaker, CircuitOpenError, ServicePolicy


def main() -> None:
    url, namespace, seconds, service = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    policy = ServicePolicy(**json.loads(sys.argv[5]))
    threads = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    go = sys.argv[7] if len(sys.argv) > 7 else None
    breaker = CircuitBreaker(
        "redis",
        redis_url=url,
        namespace=namespace,
        default_policy=policy,
        refresh_interval=0.2,
        socket_timeout=0.2,
    )
    breaker.initialize()
    breaker.is_available(service)
    ran: list[float] = []
    rejected: list[float] = []
    foreign: list[str] = []

    def run() -> None:
        ran.append(time.time())
        if service.startswith("down"):
            raise ConnectionError("down")

    def loop(deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                breaker.execute(service, run)
            except ConnectionError:
                pass
            except CircuitOpenError:
                rejected.append(time.time())
            except Exception as exc:
                foreign.append(repr(exc))
            time.sleep(0.001)

    print("ready", flush=True)
    waited = time.monotonic() + 30
    while go is not None and not os.path.exists(go) and time.monotonic() < waited:
        time.sleep(0.005)
    deadline = time.monotonic() + seconds
    workers = [threading.Thread(target=loop, args=(deadline,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    breaker.close()
    print(json.dumps({"ran": ran, "rejected": rejected, "foreign": foreign[:5]}), flush=True)


if __name__ == "__main__":
    main()
