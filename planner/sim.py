"""Discrete-event simulation of the fleet: queue, instances, launches, spot interruptions, scaling.

One heap of timed events (job finished, instance ready, spot notice, instance gone, metric minute),
arrivals merged in from the trace's sorted array, one seeded generator. What is modelled, and how:

- Queue: SQS standard, FIFO enough for waiting times; an idle agent's long poll takes a job the moment
  it is visible. A handed-back job goes to the front (it becomes visible again at once).
- Worker: one job at a time (the agent as built has no batching and no model affinity); a job whose
  model is not the one on the GPU pays the model's switch cost first.
- Instances: launch-to-ready is the sum of the workload's phases (EC2 launch, boot, backend, one preload
  per hot model, lifecycle action); a warm-pool instance uses the warm phases and the pool refills
  after a cold launch's time. Instances count as InService only when ready (the launching hook).
- Spot: interruptions arrive as a Poisson process per spot instance; at the 2-minute notice the agent
  stops pulling and hands its job back, capacity rebalancing launches the replacement, and the
  instance stays InService (in the metric's denominator) until it is gone.
- Scaling: every minute a datapoint (queue depth / InService of all groups) from ``lag`` minutes ago
  feeds ``scaling_plan.TargetTracker`` and the zero-to-one step, the same arithmetic the stack
  declares. Scale-in terminates idle instances first, then pending ones; busy instances are protected
  and leave when their job ends.

The run continues after the last arrival until every job has finished; ``audit`` then checks that no job
was lost and that Little's law holds exactly for the system and for the queue.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from components.scaling_plan import SPOT_NOTICE_SECONDS, FleetPlan, TargetTracker, combine, from_zero_adjustment
from planner.traces import Trace
from planner.workload import Dist, Workload, sampler

FINISH, READY, NOTICE, GONE, TICK, WARMED = range(6)
PENDING, IDLE, BUSY, NOTICED, DEAD = range(5)
ON_DEMAND, SPOT = 0, 1
CHUNK = 1 << 20


MAX_BACKLOG = 1_000_000


class SaturatedError(ValueError):
    """The backlog outgrew ``MAX_BACKLOG``: the fleet cannot keep up, so the run stops early."""


class AuditError(AssertionError):
    """The simulation broke one of its own invariants (a job lost or counted twice, Little's law)."""


@dataclass
class Sample:
    """The fleet at one metric minute (for the report and the plot)."""

    t: float
    queue: int
    in_service: int
    pending: int
    alive_on_demand: int
    alive_spot: int
    desired_spot: int
    metric: float | None


@dataclass
class SimResult:
    arrivals: int
    completed: int
    end_time: float
    waits: np.ndarray
    e2e: np.ndarray
    samples: list[Sample]
    instance_seconds: dict[tuple[int, str], float]  # (market, instance type) -> seconds alive
    warm_pool_seconds: float  # stopped warm-pool instance-seconds
    busy_seconds: float
    in_service_seconds: float
    handed_back: int
    interruptions: int
    launches: int
    area_system: float
    area_queue: float
    wasted_service: float
    lost: int = 0
    trace_times: np.ndarray = field(default_factory=lambda: np.zeros(0))


class Simulation:
    def __init__(self, plan: FleetPlan, workload: Workload, hot_models: int = 1, seed: int = 1, lag_periods: int = 1,
                 scale: bool = True, initial_spot: int | None = None):
        if sum(g.max_size for g in plan.groups) == 0:
            raise ValueError("the fleet can never have an instance: raise maxSize")
        self.plan, self.work, self.lag, self.scale = plan, workload, lag_periods, scale
        self.rng = np.random.default_rng(seed)
        self.draw = [sampler(m.service, self.rng) for m in workload.models]
        self.switch = [m.switch_seconds for m in workload.models]
        self.cold = self._phase_samplers(workload.cold_phases, hot_models)
        self.warm = self._phase_samplers(workload.warm_phases, hot_models)
        self.interrupt_rate = workload.spot_interruptions_per_hour / 3600.0
        self.exp = sampler_exp(self.rng)
        groups = plan.groups
        self.scaled = [g.scaled and scale and plan.has_scaling_policies for g in groups]
        self.desired = [g.min_size if g.scaled else g.desired_capacity or 0 for g in groups]
        if initial_spot is not None:  # start from a fleet already sized for the load, not from minSize
            self.desired[0] = min(groups[0].max_size, max(groups[0].min_size, initial_spot))
        self.count = [0] * len(groups)  # pending + InService, not leaving
        self.in_service = [0] * len(groups)  # InService, including instances under a spot notice
        self.on_demand = [0] * len(groups)
        self.warm_pool = [g.warm_pool_size for g in groups]
        self.tracker = TargetTracker(plan.target, groups[0].min_size, groups[0].max_size)
        self.util_tracker = (TargetTracker(float(plan.gpu_utilization_target), groups[0].min_size, groups[0].max_size)
                             if plan.gpu_utilization_target is not None else None)
        self.heap: list[tuple] = []
        self.queue: deque = deque()
        self.idle: set[int] = set()
        # per instance
        self.st, self.grp, self.mkt, self.born, self.died = array("b"), array("b"), array("b"), [], []
        self.loaded, self.j_arr, self.j_model, self.j_start, self.tok = [], [], [], [], []
        self.handed_back = self.interruptions = self.launches = 0
        self.wasted = self.warm_seconds = 0.0
        self.samples: list[Sample] = []
        self.history: list[tuple[int, int, int, int]] = []

    def _phase_samplers(self, phases, hot_models: int):
        draws = {k: sampler(d, self.rng, 4096) for k, d in phases.items()}
        preload = draws.pop("preload_per_model")

        def total() -> float:
            return sum(d() for d in draws.values()) + sum(preload() for _ in range(hot_models))

        return total

    # --- instances ---------------------------------------------------------------------------------------
    def _launch(self, g: int, now: float, ready: bool = False) -> None:
        i = len(self.st)
        gp = self.plan.groups[g]
        on_demand = not gp.mixed or self.on_demand[g] + 1 <= round(gp.on_demand_percent / 100 * (self.count[g] + 1))
        market = ON_DEMAND if on_demand else SPOT
        self.st.append(PENDING)
        self.grp.append(g)
        self.mkt.append(market)
        self.born.append(now)
        self.died.append(None)
        self.loaded.append(-1)
        self.j_arr.append(0.0)
        self.j_model.append(0)
        self.j_start.append(0.0)
        self.tok.append(0)
        self.count[g] += 1
        self.on_demand[g] += market == ON_DEMAND
        if ready:
            self._ready(i, now)
        else:
            self.launches += 1
            if self.warm_pool[g] > 0:
                self.warm_pool[g] -= 1
                delay = self.warm()
                heapq.heappush(self.heap, (now + self.cold(), WARMED, g, 0))  # the pool prepares a new one
            else:
                delay = self.cold()
            heapq.heappush(self.heap, (now + delay, READY, i, 0))
        if market == SPOT and self.interrupt_rate > 0:
            heapq.heappush(self.heap, (now + self.exp() / self.interrupt_rate, NOTICE, i, 0))

    def _ready(self, i: int, now: float) -> None:
        if self.st[i] != PENDING:
            return
        self.in_service[self.grp[i]] += 1
        self._idle_or_serve(i, now)

    def _idle_or_serve(self, i: int, now: float) -> None:
        if self.queue:
            a, m = self.queue.popleft()
            self._start(i, now, a, m)
        else:
            self.st[i] = IDLE
            self.idle.add(i)

    def _start(self, i: int, now: float, a: float, m: int) -> None:
        svc = self.draw[m]()
        if self.loaded[i] != m:
            svc += self.switch[m]
            self.loaded[i] = m
        self.j_arr[i], self.j_model[i], self.j_start[i] = a, m, now
        self.st[i] = BUSY
        heapq.heappush(self.heap, (now + svc, FINISH, i, self.tok[i]))

    def _leave(self, i: int, now: float, gone: bool) -> None:
        """Stop counting ``i`` in its group; ``gone``: terminated now, else gone after the spot notice."""
        g, state = self.grp[i], self.st[i]
        self.count[g] -= 1
        self.on_demand[g] -= self.mkt[i] == ON_DEMAND
        self.idle.discard(i)
        if gone:
            if state != PENDING:
                self.in_service[g] -= 1
            self.st[i], self.died[i] = DEAD, now
        else:
            self.st[i] = NOTICED
            heapq.heappush(self.heap, (now + SPOT_NOTICE_SECONDS, GONE, i, 0))

    def _notice(self, i: int, now: float) -> None:
        state = self.st[i]
        if state in (NOTICED, DEAD):
            return
        self.interruptions += 1
        if state == BUSY:  # hand the job back: visible again at once, at the front of the queue
            self.tok[i] += 1
            self.queue.appendleft((self.j_arr[i], self.j_model[i]))
            self.wasted += now - self.j_start[i]
            self.handed_back += 1
        self._leave(i, now, gone=state == PENDING)
        self._reconcile(self.grp[i], now)  # capacity rebalancing: the replacement starts now
        self._dispatch(now)

    def _dispatch(self, now: float) -> None:
        while self.idle and self.queue:
            i = self.idle.pop()
            a, m = self.queue.popleft()
            self._start(i, now, a, m)

    def _reconcile(self, g: int, now: float) -> None:
        excess = self.count[g] - self.desired[g]
        for _ in range(-excess):
            self._launch(g, now)
        if excess <= 0:
            return
        for i in [i for i in self.idle if self.grp[i] == g][:excess]:
            self._leave(i, now, gone=True)
            excess -= 1
        i = len(self.st) - 1
        while excess > 0 and i >= 0:  # then pending ones, newest first; busy ones leave when their job ends
            if self.grp[i] == g and self.st[i] == PENDING:
                self._leave(i, now, gone=True)
                excess -= 1
            i -= 1

    # --- scaling -----------------------------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        alive, busy_spot_group = [0, 0], 0
        for i in range(len(self.st)):
            if self.st[i] != DEAD:
                alive[self.mkt[i]] += 1
                busy_spot_group += self.st[i] == BUSY and self.grp[i] == 0
        backlog, in_service = len(self.queue), sum(self.in_service)
        if backlog > MAX_BACKLOG:
            raise SaturatedError(
                f"{backlog:,} jobs queued after {now / 3600:.1f} h with {in_service} instances InService (spot group "
                f"wants {self.desired[0]}, maximum {self.plan.spot.max_size}): the fleet cannot keep up; raise maxSize "
                f"(--set maxSize=N) or lower the trace's rate")
        self.history.append((backlog, in_service, self.in_service[0], busy_spot_group))
        lagged = self.history[max(0, len(self.history) - 1 - self.lag)]
        metric = lagged[0] / lagged[1] if lagged[1] else None
        if self.scaled[0]:
            self._scale(lagged, metric, now)
        self.warm_seconds += sum(self.warm_pool) * self.plan.metric_period
        self.samples.append(Sample(now, backlog, in_service, sum(self.count) - sum(self.in_service) +
                                   sum(1 for i in range(len(self.st)) if self.st[i] == NOTICED),
                                   alive[ON_DEMAND], alive[SPOT], self.desired[0], metric))
        heapq.heappush(self.heap, (now + self.plan.metric_period, TICK, 0, 0))

    def _scale(self, lagged: tuple[int, int, int, int], metric: float | None, now: float) -> None:
        """The spot group's policies on one datapoint, at the capacity it was measured at (no lag overshoot)."""
        current = self.desired[0]
        proposals = [self.tracker.observe(metric, lagged[2], current)]
        if self.util_tracker is not None:  # GPU busy while a job runs: utilisation = busy share x 100
            util = 100.0 * lagged[3] / lagged[2] if lagged[2] else None
            proposals.append(self.util_tracker.observe(util, lagged[2], current))
        desired = combine(current, proposals)
        desired += from_zero_adjustment(lagged[0], desired, self.plan.from_zero_threshold)
        self.desired[0] = min(self.plan.spot.max_size, desired)
        self._reconcile(0, now)

    def _rare(self, kind: int, who: int, now: float) -> None:
        if kind == READY:
            self._ready(who, now)
        elif kind == NOTICE:
            self._notice(who, now)
        elif kind == GONE:
            g = self.grp[who]
            self.in_service[g] -= 1
            self.st[who], self.died[who] = DEAD, now
        elif kind == TICK:
            self._tick(now)
        elif kind == WARMED:
            self.warm_pool[who] += 1

    # --- the run -----------------------------------------------------------------------------------------
    def run(self, trace: Trace, models: np.ndarray) -> SimResult:  # noqa: C901 - the hot loop is inlined for speed
        """Serve every job of ``trace`` (model index per job in ``models``); return what happened."""
        for g in range(len(self.plan.groups)):
            for _ in range(self.desired[g]):
                self._launch(g, 0.0, ready=True)
        heapq.heappush(self.heap, (0.0, TICK, 0, 0))
        heap, queue, idle, st, tok, grp = self.heap, self.queue, self.idle, self.st, self.tok, self.grp
        j_arr, j_start, count, desired = self.j_arr, self.j_start, self.count, self.desired
        pop, rare, start = heapq.heappop, self._rare, self._start
        waits, e2e = array("d"), array("d")
        w_add, e_add = waits.append, e2e.append
        n = len(trace.times)
        if n == 0:
            raise ValueError(f"trace {trace.name} has no jobs")
        area = area_q = busy = last = 0.0
        nsys = completed = 0
        inf = math.inf
        for lo in range(0, n, CHUNK):
            ts = trace.times[lo:lo + CHUNK].tolist()
            ms = models[lo:lo + CHUNK].tolist()
            if lo + CHUNK >= n:  # after the last arrival: drain
                ts.append(inf)
                ms.append(-1)
            for t, m in zip(ts, ms, strict=True):
                while heap[0][0] <= t:
                    now, kind, i, token = pop(heap)
                    dt = now - last
                    area += nsys * dt
                    area_q += len(queue) * dt
                    last = now
                    if kind != FINISH:
                        rare(kind, i, now)
                        continue
                    if token != tok[i]:
                        continue  # handed back at a spot notice
                    a, s = j_arr[i], j_start[i]
                    w_add(s - a)
                    e_add(now - a)
                    busy += now - s
                    completed += 1
                    nsys -= 1
                    if completed == n and t == inf:
                        break
                    g = grp[i]
                    if count[g] > desired[g]:
                        self._leave(i, now, gone=True)  # scale-in waited for this job
                    elif queue:
                        a, m2 = queue.popleft()
                        start(i, now, a, m2)
                    else:
                        st[i] = IDLE
                        idle.add(i)
                if t == inf:
                    break
                dt = t - last
                area += nsys * dt
                area_q += len(queue) * dt
                last = t
                nsys += 1
                if idle:
                    start(idle.pop(), t, t, m)
                else:
                    queue.append((t, m))
        return self._result(trace, n, completed, last, waits, e2e, busy, area, area_q, nsys)

    def _result(self, trace, n, completed, end, waits, e2e, busy, area, area_q, nsys) -> SimResult:
        seconds: dict[tuple[int, str], float] = {}
        in_service_seconds = 0.0
        for i in range(len(self.st)):
            gp = self.plan.groups[self.grp[i]]
            key = (self.mkt[i], gp.instance_types[0])
            life = (self.died[i] if self.died[i] is not None else end) - self.born[i]
            seconds[key] = seconds.get(key, 0.0) + life
        in_service_seconds = sum(s.in_service for s in self.samples) * self.plan.metric_period
        lost = n - completed + len(self.queue) + nsys
        return SimResult(
            arrivals=n, completed=completed, end_time=end, waits=np.frombuffer(waits, dtype=float),
            e2e=np.frombuffer(e2e, dtype=float), samples=self.samples, instance_seconds=seconds,
            warm_pool_seconds=self.warm_seconds, busy_seconds=busy, in_service_seconds=in_service_seconds,
            handed_back=self.handed_back, interruptions=self.interruptions, launches=self.launches,
            area_system=area, area_queue=area_q, wasted_service=self.wasted, lost=lost, trace_times=trace.times)


def sampler_exp(rng: np.random.Generator):
    """Unit-mean exponential draws (Poisson interruption times)."""
    return sampler(Dist(1.0, kind="exponential"), rng, 4096)


def audit(r: SimResult, rel: float = 1e-6) -> None:
    """Raise ``AuditError`` unless every job finished exactly once and Little's law holds on this run.

    With every job finished, the area under the number-in-system curve equals the sum of the jobs' times
    in system (L = lambda W over the run), and the area under the queue-length curve equals the sum of
    waits less the service time spent on attempts that were handed back.
    """
    if r.lost or r.completed != r.arrivals or len(r.e2e) != r.arrivals:
        raise AuditError(f"jobs lost: {r.arrivals} arrived, {r.completed} finished")
    total = float(r.e2e.sum())
    if not math.isclose(r.area_system, total, rel_tol=rel, abs_tol=1e-6):
        raise AuditError(f"Little's law (system): area {r.area_system:.6g} != sum of times in system {total:.6g}")
    waits = float(r.waits.sum())
    if not math.isclose(r.area_queue + r.wasted_service, waits, rel_tol=rel, abs_tol=1e-6):
        raise AuditError(f"Little's law (queue): area {r.area_queue:.6g} + handed-back service {r.wasted_service:.6g}"
                         f" != sum of waits {waits:.6g}")
