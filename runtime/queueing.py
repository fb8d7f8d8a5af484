"""Queueing estimates shared by the API (``POST /v1/quotes``) and the planner: plain Python, no numpy.

``runtime/`` must not import ``planner/`` (the layering test) and the API's bundle has no numpy, so the
formulas live here and the planner may import them.

- ``next_start_seconds``: when a job submitted now starts on a fleet in a known state. ``servers`` workers run
  one job at a time, first come first served; ``busy`` of them are running a job with ``residual_s`` left
  (half a service time expected, since the job began at a random moment of its run), ``ahead`` jobs wait
  before ours. Each free worker takes the next job: the new job starts when the ``ahead + 1``-th free slot
  opens (a list of free times, the earliest taken each time).
"""

from __future__ import annotations

import heapq


def next_start_seconds(*, ahead: int, busy: int, servers: int, service_s: float,
                       residual_s: float | None = None) -> float:
    """Seconds until a job submitted now starts (0 when a worker is free for it)."""
    servers = max(1, int(servers), int(busy))
    residual = service_s / 2.0 if residual_s is None else residual_s
    free = [residual] * min(int(busy), servers) + [0.0] * (servers - min(int(busy), servers))
    heapq.heapify(free)
    for _ in range(max(0, int(ahead))):
        heapq.heappush(free, heapq.heappop(free) + service_s)
    return round(free[0], 3)

