"""The Redis backend: one shared, exact view of each circuit for every process and host.

Where each part lives:

* ``_backend.py``: ``RedisBackend``, its options, connections and lifecycle.
* ``_circuit.py``: ``RedisCircuit``, one service: the in-memory mirror the call path
  reads, and the operations that run the script.
* ``_script.py``: running the Lua state machine (``_lua/circuit.lua``) and checking
  its replies and published notices.
* ``_listener.py``: the pub/sub thread that keeps mirrors fresh within a millisecond.
* ``_refresher.py``: the second thread: store probes, data-loss detection, resyncs.
* ``_health.py``: degradation (``degraded``), storage events, rate-limited warnings.
* ``_keys.py``: key and channel names; ``_urls.py``: URLs and masking secrets.

In order of what matters:

* **No I/O on the healthy path**: healthy calls and rejections (open, forced open,
  or every half-open trial permit taken) read the mirror only. A failure, a trial
  and a process's first call for a service make one round trip.
* **Exact under concurrency**: every change is one atomic Lua script, with time from
  Redis ``TIME`` so hosts with skewed clocks agree.
* **Redis trouble never reaches the caller**: when the store fails, calls are decided
  by per-process circuits that start from the last shared state (or refused, with
  ``on_storage_error``), and the backend returns to the shared state within two
  ``refresh_interval`` of Redis answering again.
* **Async never blocks the loop**: async call paths use ``redis.asyncio``.
* **Secrets stay secret**: passwords are masked in every repr, log line and error.
"""

try:
    import redis as _redis  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the redis backend needs redis-py: pip install 'tnm-circuit-core[redis]'") from exc

from ._backend import RedisBackend
from ._urls import redact_url

__all__ = ["RedisBackend", "redact_url"]

# Exported classes and functions report this module, not the private one defining them.
RedisBackend.__module__ = redact_url.__module__ = __name__
