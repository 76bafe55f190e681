"""The outage drill: prove, on a real fleet, what a shared breaker saves during an outage.

    uv run --group bench python bench/drill.py                 # both scenarios, every contender
    uv run --group bench python bench/drill.py --quick --json /tmp/drill.json --plot /tmp/drill.png

It starts a real upstream (uvicorn on a free loopback port), a private redis-server, and for
each contender a fleet of worker processes (FastAPI on uvicorn) that call the upstream; a load
generator sends a fixed request rate to the fleet while the upstream stalls or fails, then
recovers. The code is in ``bench/drill/`` (its ``__init__`` says which file does what); the
results and how to read them are in docs/outage-drill.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]  # the drill package, and the repo (tests.redis_server)

from drill.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
