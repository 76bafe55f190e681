"""The Redis backend: one shared, exact view of each circuit for every process and host.

Where each part lives (at run time, each module imports only those below it here):

* ``_backend.py``: ``RedisBackend``, its options and lifecycle; it builds the parts below
  and hands each the store and the overrides (nothing imports it).
* ``_listener.py``: the pub/sub thread; a notice is a hint to re-read the named circuits.
* ``_refresher.py``: the second thread: store probes, data-loss detection, resyncs.
* ``_circuit.py``: ``RedisCircuit``, the call path, inspection and operators' controls,
  over ``_operations.py`` (one script run, sync or async, and the successes owed to the
  rate window) over ``_mirror.py`` (what this process knows of the shared state).
* ``_overrides.py``: the registry of operators' overrides (force_open, disable), restored
  after a data loss.
* ``_buckets.py``: the success flusher (rate windows).
* ``_store.py``: ``Store``, what the parts share: clients, keys, server time, health,
  this process's mirrors, task submission.
* ``_health.py``: degradation (``degraded``), storage events, rate-limited warnings.
* ``_script.py`` runs ``circuit.lua`` (the state machine, beside it) and checks its
  replies and notices; ``_refusals.py`` tells a refused command from an outage.
* ``_keys.py``: key and channel names; ``_clients.py``, ``_derive.py``: connections;
  ``_urls.py``: URLs and masking secrets; ``_worker.py``: the threads' base.

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
