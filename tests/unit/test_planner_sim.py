"""The planner's simulation against closed forms (M/M/c, Little's law) and the deployed policy's arithmetic."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from components import scaling_plan as sp
from planner import sim, traces
from planner.workload import Dist, ModelLoad, Workload, job_models
from tests.unit.component_harness import fleet, stack_fleet

EXPONENTIAL_1S = Workload("mm", (ModelLoad("m", 1.0, Dist(1.0, kind="exponential")),), "test",
                          spot_interruptions_per_hour=0.0)


def plan_of(cfg):
    """The plan the cluster declares for a stack config (its cluster and queue slices)."""
    return sp.fleet_plan(cfg.cluster, cfg.queue)


def erlang_c(c: int, a: float) -> float:
    """Probability that a job waits in M/M/c with offered load a = lambda / mu (a < c)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def run(plan, work, spec, seed=3, **kw):
    trace = traces.load(spec, seed=seed)
    result = sim.Simulation(plan, work, seed=seed, **kw).run(trace, job_models(trace, work, seed))
    sim.audit(result)
    return result


def test_fixed_fleet_waits_like_m_m_c():
    c, lam = 4, 3.0  # rho = 0.75, mu = 1/s
    plan = plan_of(fleet(minSize=c, maxSize=c, onDemandBase=c))
    assert not plan.has_scaling_policies
    r = run(plan, EXPONENTIAL_1S, f"constant:rate={lam},hours=24")
    assert r.arrivals > 250_000
    pw = erlang_c(c, lam)
    assert r.waits.mean() == pytest.approx(pw / (c - lam), rel=0.08)  # E[Wq] = C / (c mu - lambda)
    assert (r.waits > 0).mean() == pytest.approx(pw, abs=0.02)
    assert (r.waits > 1.0).mean() == pytest.approx(pw * math.exp(-(c - lam)), abs=0.015)
    assert r.e2e.mean() == pytest.approx(pw / (c - lam) + 1.0, rel=0.04)
    assert r.launches == 0 and sum(r.instance_seconds.values()) == pytest.approx(c * r.end_time)


def test_audit_catches_a_lost_job_and_a_broken_law():
    plan = plan_of(fleet(minSize=2, maxSize=2, onDemandBase=2))
    r = run(plan, EXPONENTIAL_1S, "constant:rate=1,hours=0.2")
    with pytest.raises(sim.AuditError, match="jobs lost"):
        sim.audit(dataclasses.replace(r, completed=r.completed - 1, lost=1))
    with pytest.raises(sim.AuditError, match="Little"):
        sim.audit(dataclasses.replace(r, area_system=r.area_system * 1.01))
    with pytest.raises(sim.AuditError, match="queue"):
        sim.audit(dataclasses.replace(r, area_queue=r.area_queue + 5.0))


def test_spot_interruptions_hand_jobs_back_and_lose_none():
    mix = Workload("mix", (ModelLoad("a", 0.5, Dist(2.0, 0.2), switch_seconds=1.0),
                           ModelLoad("b", 0.5, Dist(1.0, 0.2), switch_seconds=0.5)), "test",
                   spot_interruptions_per_hour=3.0)  # absurdly high, to exercise hand-backs
    plan = plan_of(stack_fleet("dev", maxSize=30))
    r = run(plan, mix, "bursts:base=2,peak=12,every=1200,length=300,hours=2")
    assert r.interruptions > 10 and r.handed_back > 0 and r.wasted_service > 0
    assert r.lost == 0 and r.completed == r.arrivals  # audit() also proved Little's law for this run
    assert max(s.desired_spot for s in r.samples) <= plan.spot.max_size


def _replay(plan: sp.FleetPlan, samples: list[sim.Sample]) -> list[int]:
    """Desired capacity per minute from the recorded datapoints, with scaling_plan's arithmetic only.

    Each minute acts on the previous minute's datapoint (lag 1): its backlog and InService count.
    """
    tracker = sp.TargetTracker(plan.target, plan.spot.min_size, plan.spot.max_size)
    desired, out = plan.spot.min_size, []
    for i, s in enumerate(samples):
        lagged = samples[max(0, i - 1)]
        assert s.metric == (lagged.queue / lagged.in_service if lagged.in_service else None)
        desired = sp.combine(desired, [tracker.observe(s.metric, lagged.in_service, desired)])
        desired += sp.from_zero_adjustment(lagged.queue, desired, plan.from_zero_threshold)
        desired = min(plan.spot.max_size, desired)
        out.append(desired)
    return out


def test_scaling_decisions_follow_the_deployed_policy():
    """Spot-only dev stack: every desired capacity the simulation chose is the policy's answer to its data."""
    work = Workload("c", (ModelLoad("m", 1.0, Dist(2.0, 0.1)),), "test", spot_interruptions_per_hour=0.0)
    cfg = stack_fleet("dev", maxSize=60)
    plan = plan_of(cfg)
    assert plan.on_demand is None and plan.target == 10.0 and plan.from_zero_threshold == 1
    r = run(plan, work, "diurnal:peak=15,trough=1,hours=6")
    desired = [s.desired_spot for s in r.samples]
    assert desired == _replay(plan, r.samples)
    assert desired[0] == 0 and max(desired) > 5  # left zero through the step, then tracked the load
    first = next(i for i, d in enumerate(desired) if d > 0)
    assert desired[first] == sp.FROM_ZERO_STEP and r.samples[first - 1].queue >= plan.from_zero_threshold
    for i in range(1, len(desired)):  # scale-out only after three datapoints above the target
        if desired[i] > desired[i - 1] and desired[i - 1] > 0:
            assert all(r.samples[k].metric is not None and r.samples[k].metric > plan.target
                       for k in range(i - 2, i + 1))


def test_warm_pool_instances_start_faster():
    fast = dataclasses.replace(EXPONENTIAL_1S, warm_phases={k: Dist(1.0, kind="constant")
                                                            for k in EXPONENTIAL_1S.warm_phases})
    plan = plan_of(fleet(minSize=1, maxSize=1, onDemandBase=1, warmPoolSize=1))
    s = sim.Simulation(plan, fast, seed=1)
    s._launch(1, 0.0)  # a replacement in the on-demand group takes the warmed instance
    ready_at = min(t for t, kind, _, _ in s.heap if kind == sim.READY)
    assert ready_at == pytest.approx(5.0)  # five phases (one hot model) of 1 s each
    assert s.warm_pool[1] == 0


def test_job_models_follow_the_mix_and_the_trace():
    trace = traces.Trace("t", np.arange(10_000, dtype=float))
    mix = Workload("mix", (ModelLoad("a", 0.25, Dist(1.0)), ModelLoad("b", 0.75, Dist(1.0))), "test")
    idx = job_models(trace, mix, seed=1)
    assert abs((idx == 1).mean() - 0.75) < 0.02
    named = traces.Trace("t", np.arange(3, dtype=float), np.asarray([1, 0, 1]), ("a", "zz"))
    with pytest.raises(ValueError, match="zz"):
        job_models(named, mix, seed=1)


def test_a_fleet_that_cannot_keep_up_stops_with_advice(monkeypatch):
    monkeypatch.setattr(sim, "MAX_BACKLOG", 500)
    plan = plan_of(fleet(minSize=1, maxSize=1, onDemandBase=1))
    with pytest.raises(sim.SaturatedError, match="raise maxSize"):
        run(plan, EXPONENTIAL_1S, "constant:rate=5,hours=1")
