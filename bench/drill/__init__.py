"""The outage drill: a real fleet, a dependency that dies, and what each breaker saves.

Run it with ``uv run --group bench python bench/drill.py`` (``--quick`` for a short run).
Where each thing happens:

- ``config.py``: the drill's settings and the one policy every contender gets;
- ``upstream.py``: the dependency (a uvicorn server) that stalls or fails on command;
- ``worker.py``: one fleet member, a FastAPI app served by uvicorn that calls the upstream;
- ``contenders.py``: how each contender (no breaker, circuitbreaker, pybreaker on Redis,
  tnm on the local backend, tnm on Redis) wraps the same httpx call;
- ``processes.py``: starting, watching and stopping every child process;
- ``load.py``: the load generator (a fixed request rate, bounded in count and time);
- ``run.py``: one run of one contender through one scenario;
- ``measures.py``: the figures computed from what the upstream, the workers and the load
  generator recorded;
- ``report.py``: the table, the goals and the JSON;
- ``plot.py``: the picture;
- ``cli.py``: the command line.
"""
