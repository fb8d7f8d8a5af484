"""Deadlines, admission control and priority classes under overload (issue 44): a focused model of the door and
the queues, next to the fleet simulation (``planner/sim.py``, which keeps one FIFO queue and scales the fleet).

A fixed fleet of ``servers`` workers, one job at a time, service times lognormal with mean ``service_s`` and
coefficient of variation ``cv``; Poisson arrivals at ``overload`` times the fleet's throughput
(servers / service_s), each job of a class drawn by ``shares``. What is modelled, as the stack does it:

- Admission (``runtime/api/admission.py``): at arrival, the quote's expected wait
  (``runtime.queueing.next_start_seconds`` with the busy workers, half a service time left each, and the jobs
  ahead of this class under the weighted polling, ``priorities.jobs_ahead``) above the job's bound (its
  deadline, or ``admission_s``, the smaller) -> refused (429), counted per class. (The API counts every queued
  job today: one queue, first come first served; the per-class count needs the queue per class.)
- Deadlines (``runtime/jobs/deadlines.py``): a job still queued at its deadline never starts: it is canceled
  (reason deadline) when a worker reaches it (the claim), counted per class; it takes no worker time.
- Classes (``runtime/jobs/priorities.py``): a queue per class; a free worker takes the head of the class
  ``WeightedPicker`` (smooth weighted round robin, ``POLL_WEIGHTS``) picks among the classes with work.

``run_classes`` returns per class: arrivals, refused, expired, started and the p50/p95/max wait of the started
jobs (arrival to start), plus the starvation bound: the longest run of picks without one of the lowest class
while it had work (about sum(POLL_WEIGHTS); the run measures it).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

import numpy as np

from runtime.jobs.priorities import POLL_WEIGHTS, PRIORITIES, WeightedPicker, jobs_ahead
from runtime.queueing import next_start_seconds


@dataclass(frozen=True)
class ClassStats:
    name: str
    arrivals: int
    refused: int
    expired: int
    started: int
    p50_wait: float | None
    p95_wait: float | None
    max_wait: float | None


@dataclass(frozen=True)
class ClassesResult:
    classes: list[ClassStats]
    throughput_per_s: float
    low_gap_starts: int  # longest run of picks without a low pick while low had work

    def by_name(self) -> dict[str, ClassStats]:
        return {c.name: c for c in self.classes}


def run_classes(*, servers: int, service_s: float, overload: float, shares: dict[str, float], seconds: float,
                deadlines: dict[str, float] | None = None, admission_s: float | None = None, cv: float = 0.1,
                weights: dict[str, int] | None = None, seed: int = 1) -> ClassesResult:
    """Simulate ``seconds`` of arrivals (then drain) and return the per-class figures."""
    _check(servers, service_s, overload, seconds, shares, deadlines or {})
    rng = np.random.default_rng(seed)
    deadlines = deadlines or {}
    names = [c for c in PRIORITIES if shares.get(c, 0) > 0]
    probs = np.array([shares[c] for c in names]) / sum(shares[c] for c in names)
    rate = overload * servers / service_s
    n = int(rng.poisson(rate * seconds))
    times = np.sort(rng.uniform(0.0, seconds, n))
    kinds = rng.choice(len(names), size=n, p=probs)
    sigma = float(np.sqrt(np.log(1 + cv * cv)))
    services = rng.lognormal(np.log(service_s) - sigma * sigma / 2, sigma, n)

    queues: dict[str, deque] = {c: deque() for c in PRIORITIES}
    picker = WeightedPicker(weights or POLL_WEIGHTS)
    free = servers
    finishing: list[float] = []  # finish times of busy workers
    waits: dict[str, list[float]] = {c: [] for c in PRIORITIES}
    counts = {c: {"arrivals": 0, "refused": 0, "expired": 0} for c in PRIORITIES}
    gap = longest_gap = 0
    queued = 0

    def start_next(now: float) -> None:
        nonlocal free, gap, longest_gap, queued
        while free and queued:
            cls = picker.pick([c for c in PRIORITIES if queues[c]])
            arrived, job = queues[cls].popleft()
            queued -= 1
            if cls == PRIORITIES[-1]:  # the starvation bound counts picks: an expired low job was reached too
                gap = 0
            elif queues[PRIORITIES[-1]]:
                gap += 1
                longest_gap = max(longest_gap, gap)
            deadline = deadlines.get(cls)
            if deadline is not None and now - arrived > deadline:
                counts[cls]["expired"] += 1  # canceled at the claim: no worker time
                continue
            waits[cls].append(now - arrived)
            free -= 1
            heapq.heappush(finishing, now + float(services[job]))

    for job in range(n):
        t, cls = float(times[job]), names[int(kinds[job])]
        while finishing and finishing[0] <= t:
            now = heapq.heappop(finishing)
            free += 1
            start_next(now)
        counts[cls]["arrivals"] += 1
        bound = min((b for b in (deadlines.get(cls), admission_s) if b is not None), default=None)
        if bound is not None:
            ahead = jobs_ahead({c: len(q) for c, q in queues.items()}, cls, picker.weights)
            expected = next_start_seconds(ahead=ahead, busy=servers - free, servers=servers, service_s=service_s)
            if expected > bound:
                counts[cls]["refused"] += 1
                continue
        queues[cls].append((t, job))
        queued += 1
        start_next(t)
    while finishing:
        now = heapq.heappop(finishing)
        free += 1
        start_next(now)

    return ClassesResult([_stats(c, counts[c], waits[c]) for c in PRIORITIES], servers / service_s, longest_gap)


def _check(servers: int, service_s: float, overload: float, seconds: float, shares: dict[str, float],
           deadlines: dict[str, float]) -> None:
    if servers < 1 or service_s <= 0 or overload <= 0 or seconds <= 0:
        raise ValueError("servers >= 1, service_s > 0, overload > 0 and seconds > 0 are required")
    if set(shares) - set(PRIORITIES) or not shares or any(v < 0 for v in shares.values()) \
            or sum(shares.values()) <= 0:
        raise ValueError(f"shares: non-negative weights of the classes {', '.join(PRIORITIES)}; got {shares}")
    if set(deadlines) - set(PRIORITIES) or any(v <= 0 for v in deadlines.values()):
        raise ValueError(f"deadlines: positive seconds per class ({', '.join(PRIORITIES)}); got {deadlines}")


def _stats(name: str, counts: dict[str, int], waits: list[float]) -> ClassStats:
    w = np.array(waits)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(w, q)), 3) if len(w) else None

    return ClassStats(name, counts["arrivals"], counts["refused"], counts["expired"], len(w), pct(50), pct(95),
                      round(float(w.max()), 3) if len(w) else None)


def render_classes(result: ClassesResult, title: str) -> str:
    lines = [title, f"fleet throughput {result.throughput_per_s:.2f} jobs/s",
             f"{'class':<7} {'arrived':>8} {'429':>7} {'expired':>8} {'started':>8} {'p50 wait':>9} "
             f"{'p95 wait':>9} {'max wait':>9}"]
    for c in result.classes:
        def fmt(v: float | None) -> str:
            return f"{v:8.1f}s" if v is not None else "        -"
        lines.append(f"{c.name:<7} {c.arrivals:>8} {c.refused:>7} {c.expired:>8} {c.started:>8} {fmt(c.p50_wait)} "
                     f"{fmt(c.p95_wait)} {fmt(c.max_wait)}")
    lines.append(f"low's longest run without a pick while it waited: {result.low_gap_starts} picks "
                 f"(bound: sum of POLL_WEIGHTS = {sum(POLL_WEIGHTS.values())})")
    return "\n".join(lines)
