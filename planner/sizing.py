"""Sizing for a target: the smallest ``maxSize`` that serves a steady rate within a wait goal, the EC2 vCPU quota
that size needs, and what it costs per month.

The question a fleet owner asks before a launch: "for R jobs/s of this workload at p95 queue wait <= W s, how
big a fleet, how much quota, what per month?". ``size_for`` answers it by simulating the stack (its own scaling
settings, ``maxSize`` overridden) on a constant Poisson trace at R, warm-started at the first minute's load,
and bisecting ``maxSize`` between the size that is busy all the time (R x mean service time) and the first
doubling that meets the goal. A size meets the goal when the run keeps up (no ``SaturatedError``), loses no
job, its p95 queue wait is at most W and its instances are at most ``MAX_UTILISATION`` busy: a fleet busier than
that has no room for spot hand-backs and launches, and a queue at full load grows without bound however short a
run makes it look.

The vCPUs of an instance type follow EC2's size names for the families the fleet runs (xlarge = 4, Nxlarge =
4N: g4dn, g5, g6, g6e, inf2, p4d, p5 all hold to it); any other size is refused with the type named, since
the figure is compared with a quota request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from components import vcpu_quotas
from components.config import FleetConfig
from components.scaling_plan import on_demand_percentage
from planner.report import Summary, summarise
from planner.sim import SaturatedError
from planner.sweep import simulate
from planner.traces import Trace
from planner.workload import Workload

MAX_DOUBLINGS = 6
MAX_UTILISATION = 0.9
_SIZE = re.compile(r"^(\d*)xlarge$")


class SizingError(ValueError):
    """No size up to the search's bound meets the goal, or an instance type's vCPUs are unknown."""


def vcpus_of(instance_type: str) -> int:
    """vCPUs of ``family.Nxlarge`` by EC2's size names (the module docstring's rule)."""
    match = _SIZE.match(instance_type.partition(".")[2])
    if not match:
        raise SizingError(f"cannot tell the vCPUs of {instance_type}: sizing knows xlarge and Nxlarge types only; "
                          f"list such types in instanceTypes")
    return 4 * int(match.group(1) or 1)


@dataclass(frozen=True)
class Trial:
    max_size: int
    summary: Summary | None  # None: the fleet could not keep up
    meets: bool


@dataclass(frozen=True)
class Sizing:
    rate: float
    p95_goal: float
    best: Trial
    trials: tuple[Trial, ...]
    needs: tuple[vcpu_quotas.Need, ...]


def _trial(load_cfg: Callable[[Mapping[str, str]], FleetConfig], work: Workload, trace: Trace, size: int,
           goal: float, seed: int, lag: int) -> Trial:
    cfg = load_cfg({"maxSize": str(size)})
    try:
        summary = summarise(simulate(cfg, work, trace, seed, lag, warm_start=True), cfg.region)
    except SaturatedError:
        return Trial(size, None, False)
    meets = summary.lost == 0 and summary.wait[1] <= goal and summary.utilisation <= MAX_UTILISATION
    return Trial(size, summary, meets)


def size_for(load_cfg: Callable[[Mapping[str, str]], FleetConfig], work: Workload, trace: Trace, rate: float,
             p95_goal: float, seed: int = 1, lag: int = 1,
             progress: Callable[[Trial], None] | None = None) -> Sizing:
    """The smallest ``maxSize`` whose run of ``trace`` (steady at ``rate``) meets the goal (module docstring)."""
    base = load_cfg({})
    floor = max(1, base.cluster.on_demand_base, math.ceil(rate * work.mean_service))
    trials: dict[int, Trial] = {}

    def run(size: int) -> Trial:
        if size not in trials:
            trials[size] = _trial(load_cfg, work, trace, size, p95_goal, seed, lag)
            if progress:
                progress(trials[size])
        return trials[size]

    low, high = floor - 1, floor  # low: known (or assumed) to miss; high: the candidate that may meet
    for _ in range(MAX_DOUBLINGS + 1):
        trial = run(high)
        if trial.meets:
            break
        if trial.summary is not None and trial.summary.peak_total < high:  # the fleet never used its maximum
            raise SizingError(_scaling_problem(base, p95_goal, rate, trial))
        low, high = high, high * 2
    else:
        raise SizingError(f"no maxSize up to {low} meets p95 queue wait <= {p95_goal:g} s at {rate:g} jobs/s: "
                          f"check the stack's scaling settings with `run --set maxSize={low}`")
    while high - low > 1:
        mid = (low + high) // 2
        if run(mid).meets:
            high = mid
        else:
            low = mid
    best = trials[high]
    cfg = load_cfg({"maxSize": str(best.max_size)})
    c = cfg.cluster
    vcpus = {t: vcpus_of(t) for t in c.instance_types}
    needs = vcpu_quotas.stack_needs(c.instance_types, vcpus, c.max_size, c.on_demand_base,
                                    on_demand_percentage(c.spot_share))
    return Sizing(rate, p95_goal, best, tuple(sorted(trials.values(), key=lambda t: t.max_size)), tuple(needs))


def _scaling_problem(cfg: FleetConfig, goal: float, rate: float, trial: Trial) -> str:
    c = cfg.cluster
    return (f"at {rate:g} jobs/s the fleet peaked at {trial.summary.peak_total} of maxSize {trial.max_size} with p95 "
            f"queue wait {trial.summary.wait[1]:.1f} s: more instances are not what is missing, the stack scales out "
            f"only when waits pass acceptableWaitSeconds = {c.acceptable_wait_seconds:g} (averageJobSeconds = "
            f"{c.average_job_seconds:g}); lower it with --set acceptableWaitSeconds=N, or find the setting with "
            f"`sweep`")


def render_sizing(s: Sizing, title: str) -> str:
    rows = [title, f"  {'maxSize':>8s} {'p95 wait':>10s} {'busy':>5s} {'peak':>6s} {'$/1000':>8s} {'$/month':>10s}"]
    for t in s.trials:
        mark = "*" if t is s.best else " "
        if t.summary is None:
            rows.append(f" {mark}{t.max_size:7d}  cannot keep up")
            continue
        m = t.summary
        rows.append(f" {mark}{t.max_size:7d} {m.wait[1]:9.2f}s {100 * m.utilisation:4.0f}% {m.peak_total:6d} "
                    f"{m.cost_per_1000:8.3f} "
                    f"{m.cost_per_month:10,.0f}")
    best = s.best.summary
    assert best is not None
    rows.append(f"  for {s.rate:g} jobs/s at p95 queue wait <= {s.p95_goal:g} s and at most "
                f"{100 * MAX_UTILISATION:.0f} % busy: maxSize {s.best.max_size} "
                f"(p95 wait {best.wait[1]:.2f} s, peak {best.peak_total} instances), "
                f"${best.cost_per_month:,.0f} per month at that rate around the clock, "
                f"${best.cost_per_1000:.3f} per 1,000 images")
    for need in s.needs:
        rows.append(f"  EC2 quota \"{need.quota.name}\" ({need.quota.code}): {need.vcpus:,} vCPUs ({need.why})")
    return "\n".join(rows)
