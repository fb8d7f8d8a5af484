"""Parameter sweep: the cheapest backlog target, warm pool and on-demand base that meet a latency goal.

Each candidate is a set of config overrides validated by ``components.config`` (an invalid one, e.g. a
warm pool without an on-demand base, is reported and skipped), turned into a ``FleetPlan`` and
simulated on the same trace with the same seed. With ``--utilisations`` the GPU utilisation target is
swept too (``off`` removes it): on smooth load it, not the backlog target, sets the fleet's size. The
backlog target is set through the keys the stack has: ``averageJobSeconds`` = the workload's mean
service time, ``acceptableWaitSeconds`` = target x that.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from components.config import ConfigError, FleetConfig
from components.scaling_plan import fleet_plan
from planner.report import Summary, summarise
from planner.sim import Simulation, audit
from planner.traces import Trace
from planner.workload import Workload, job_models


@dataclass(frozen=True)
class Candidate:
    overrides: dict[str, str]
    summary: Summary | None
    problem: str | None = None

    def label(self) -> str:
        return " ".join(f"{k}={v or 'off'}" for k, v in self.overrides.items())


def steady_spot(cfg: FleetConfig, work: Workload, trace: Trace) -> int:
    """Spot instances that serve the trace's first minute at about 80 % busy, beside the on-demand base."""
    first = float((trace.times < 60.0).sum()) / 60.0
    return max(0, math.ceil(first * work.mean_service / 0.8) - cfg.cluster.on_demand_base)


def simulate(cfg: FleetConfig, work: Workload, trace: Trace, seed: int, lag: int = 1, warm_start: bool = False):
    """One audited run of ``trace`` against the stack ``cfg`` describes (``warm_start``: see ``steady_spot``)."""
    sim = Simulation(fleet_plan(cfg.cluster, cfg.queue), work, hot_models=max(1, len(cfg.cluster.hot_models)),
                     seed=seed, lag_periods=lag, initial_spot=steady_spot(cfg, work, trace) if warm_start else None)
    result = sim.run(trace, job_models(trace, work, seed))
    audit(result)
    return result


def grid(work: Workload, targets: Sequence[float], warm_pools: Sequence[int], bases: Sequence[int],
         utilisations: Sequence[int | None] = ()) -> list[dict]:
    """Every combination; a utilisation of None turns the GPU utilisation target off ("" in config)."""
    mean = round(work.mean_service, 2)
    out = []
    for t, w, b in itertools.product(targets, warm_pools, bases):
        for u in utilisations or [False]:
            cand = {"averageJobSeconds": f"{mean:g}", "acceptableWaitSeconds": f"{round(t * mean, 2):g}",
                    "warmPoolSize": str(w), "onDemandBase": str(b)}
            if u is not False:
                cand["gpuUtilizationTarget"] = "" if u is None else str(u)
            out.append(cand)
    return out


def sweep(load_cfg: Callable[[Mapping[str, str]], FleetConfig], work: Workload, trace: Trace,
          candidates: list[dict], seed: int = 1, lag: int = 1, warm_start: bool = False,
          progress: Callable[[Candidate], None] | None = None) -> list[Candidate]:
    out = []
    for overrides in candidates:
        try:
            cfg = load_cfg(overrides)
        except ConfigError as exc:
            cand = Candidate(overrides, None, "; ".join(exc.problems))
        else:
            cand = Candidate(overrides, summarise(simulate(cfg, work, trace, seed, lag, warm_start), cfg.region))
        out.append(cand)
        if progress:
            progress(cand)
    return out


def recommend(cands: list[Candidate], p95_wait_goal: float) -> Candidate | None:
    """The cheapest candidate whose p95 queue wait meets the goal (ties: the lower p95 wait)."""
    ok = [c for c in cands if c.summary is not None and c.summary.wait[1] <= p95_wait_goal]
    return min(ok, key=lambda c: (round(c.summary.cost_per_1000, 6), c.summary.wait[1])) if ok else None


def render_table(cands: list[Candidate], best: Candidate | None, goal: float) -> str:
    rows = [f"{'settings':78s} {'p95 wait':>9s} {'p99 wait':>9s} {'peak':>6s} {'$/1000':>8s} {'$/month':>10s}"]
    for c in cands:
        mark = "*" if c is best else " "
        if c.summary is None:
            rows.append(f"{mark}{c.label():77s} skipped: {c.problem}")
            continue
        s = c.summary
        rows.append(f"{mark}{c.label():77s} {s.wait[1]:8.2f}s {s.wait[2]:8.2f}s {s.peak_total:6d} "
                    f"{s.cost_per_1000:8.3f} {s.cost_per_month:10,.0f}")
    rows.append(f"* cheapest with p95 queue wait <= {goal:g} s: " + (best.label() if best else "none; widen the grid"))
    return "\n".join(rows)
