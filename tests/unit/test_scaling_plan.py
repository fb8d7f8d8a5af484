"""The scaling arithmetic's one source: the cluster declares exactly what ``fleet_plan`` says, and the
policy model (target tracking's alarms, proportional steps, zero-to-one step) behaves as documented."""

from __future__ import annotations

import re

import pytest

from components import scaling_plan as sp
from tests.unit.component_harness import fleet, stack_fleet
from tests.unit.test_inference_cluster import ALARM, ASG, POLICY, make

CASES = {
    "mixed": dict(minSize=2, maxSize=6, onDemandBase=1, warmPoolSize=1, spotShare=0.7, gpuUtilizationTarget=70,
                  hotModels='["sdxl/base-1.0", "flux/schnell"]', maxJobSeconds=600),
    "spot-only": {},
    "prod-like": dict(minSize=2, maxSize=40, onDemandBase=2, warmPoolSize=2, spotShare=0.8,
                      acceptableWaitSeconds=10, averageJobSeconds=3),
}


def plan_of(cfg):
    """The plan the cluster declares for a stack config (its cluster and queue slices)."""
    return sp.fleet_plan(cfg.cluster, cfg.queue)


@pytest.mark.parametrize("case", sorted(CASES))
def test_declared_resources_are_the_plan(case):
    cfg = fleet(**CASES[case])
    plan = plan_of(cfg)
    built = make(cfg)
    assert sorted(g.name for g in built.of_type(ASG)) == sorted(f"cluster-{g.suffix}" for g in plan.groups)
    for gp in plan.groups:
        g = built.one(ASG, f"cluster-{gp.suffix}").inputs
        assert (g["minSize"], g["maxSize"], g.get("desiredCapacity")) == (gp.min_size, gp.max_size,
                                                                         gp.desired_capacity)
        assert g["defaultInstanceWarmup"] == plan.instance_warmup
        assert g["healthCheckGracePeriod"] == plan.health_check_grace
        hooks = {h["name"]: h["heartbeatTimeout"] for h in g["initialLifecycleHooks"]}
        assert hooks == {sp.LAUNCHING_HOOK: plan.launching_heartbeat, sp.TERMINATING_HOOK: plan.terminating_heartbeat}
        if gp.mixed:
            mixed = g["mixedInstancesPolicy"]
            assert mixed["instancesDistribution"]["onDemandPercentageAboveBaseCapacity"] == gp.on_demand_percent
            assert [o["instanceType"] for o in mixed["launchTemplate"]["overrides"]] == list(gp.instance_types)
            assert g["capacityRebalance"] is gp.capacity_rebalance
        if gp.warm_pool_size:
            assert g["warmPool"]["minSize"] == gp.warm_pool_size
            assert g["warmPool"]["maxGroupPreparedCapacity"] == gp.warm_pool_max_prepared
        else:
            assert "warmPool" not in g
    target = built.one(POLICY, "cluster-spot-backlog-target").inputs["targetTrackingConfiguration"]["targetValue"]
    assert target == plan.target
    alarm = built.one(ALARM, "cluster-spot-from-zero").inputs
    (expr,) = [q["expression"] for q in alarm["metricQueries"] if q.get("returnData")]
    assert re.search(r"backlog >= (\d+)", expr).group(1) == str(plan.from_zero_threshold)
    assert alarm["evaluationPeriods"] == sp.FROM_ZERO_EVALUATION_PERIODS
    step = built.one(POLICY, "cluster-spot-from-zero").inputs["stepAdjustments"]
    assert step[0]["scalingAdjustment"] == sp.FROM_ZERO_STEP


def test_plan_of_the_prod_stack():
    plan = plan_of(stack_fleet("prod"))
    assert (plan.spot.min_size, plan.spot.max_size, plan.spot.on_demand_percent) == (0, 38, 20)
    # no warm pool in prod: it only sped up replacing the fixed base group (docs/fleet.md, "Warm pool")
    assert plan.on_demand is not None and plan.on_demand.desired_capacity == 2 and plan.on_demand.warm_pool_size == 0
    assert plan.target == round(10 / 3, 2) and plan.from_zero_threshold == 7  # ceil(3.33 x 2)
    assert plan.gpu_utilization_target == 70


def test_high_alarm_needs_three_datapoints_above_the_target():
    t = sp.TargetTracker(target=10, min_size=0, max_size=100)
    assert t.observe(40, in_service=4, desired=4) == 4
    assert t.observe(40, 4, 4) == 4
    assert t.observe(40, 4, 4) == 16  # ceil(4 x 40 / 10) on the third
    assert t.observe(10.5, 16, 16) == 17  # still in alarm: proportional, rounded up
    assert t.observe(9.99, 17, 17) == 17  # back under the target: no action


def test_missing_data_breaks_the_run_and_scale_out_is_capped():
    t = sp.TargetTracker(target=10, min_size=1, max_size=12)
    t.observe(50, 2, 2)
    t.observe(50, 2, 2)
    assert t.observe(None, 2, 2) == 2
    assert t.observe(50, 2, 2) == 2 and t.observe(50, 2, 2) == 2
    assert t.observe(500, 2, 2) == 12  # max size


def test_low_alarm_needs_fifteen_datapoints_below_ninety_percent():
    t = sp.TargetTracker(target=10, min_size=1, max_size=100)
    for _ in range(20):  # 9.5 is below the target but above 90 % of it: never scales in
        assert t.observe(9.5, 10, 10) == 10
    for _ in range(14):
        assert t.observe(2.0, 10, 10) == 10
    assert t.observe(2.0, 10, 10) == 2
    t3 = sp.TargetTracker(target=10, min_size=1, max_size=100)
    for _ in range(14):
        t3.observe(8.0, 10, 10)
    assert t3.observe(1.0, 10, 10) == 8  # the highest of the 15 low datapoints sets how far it goes
    t2 = sp.TargetTracker(target=10, min_size=3, max_size=100)
    for _ in range(15):
        out = t2.observe(0.0, 10, 10)
    assert out == 3  # min size


def test_several_targets_scale_out_on_any_and_in_only_on_all():
    assert sp.combine(10, [12, 10]) == 12
    assert sp.combine(10, [8, 10]) == 10
    assert sp.combine(10, [8, 6]) == 8
    assert sp.combine(10, [12, 6]) == 12


@pytest.mark.parametrize(("backlog", "desired", "threshold", "step"), [
    (1, 0, 1, 1), (0, 0, 1, 0), (6, 0, 7, 0), (7, 0, 7, 1), (100, 1, 1, 0)])
def test_zero_to_one_step(backlog, desired, threshold, step):
    assert sp.from_zero_adjustment(backlog, desired, threshold) == step


def test_scale_from_zero_threshold_follows_the_base():
    assert sp.scale_from_zero_threshold(fleet().cluster) == 1
    assert sp.scale_from_zero_threshold(fleet(onDemandBase=3, maxSize=6, acceptableWaitSeconds=30).cluster) == 30
