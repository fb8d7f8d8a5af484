"""Cost rules: allowed instance types, group size caps, spot share, retention bounds, monthly budget."""

from __future__ import annotations

import pytest

from genai_policies import cost
from tests.unit._policy_helpers import TAGS, policy_resource, resource_args, run_policy, stack_args

LT = "aws:ec2/launchTemplate:LaunchTemplate"
GROUP = "aws:autoscaling/group:Group"
LOGS = "aws:cloudwatch/logGroup:LogGroup"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
PROD_TAGS = {**TAGS, "Environment": "prod"}


def mixed(types=("g6.xlarge",), base=0, pct=0, max_size=3, min_size=0):
    return {"minSize": min_size, "maxSize": max_size, "mixedInstancesPolicy": {
        "instancesDistribution": {"onDemandBaseCapacity": base, "onDemandPercentageAboveBaseCapacity": pct},
        "launchTemplate": {"overrides": [{"instanceType": t} for t in types]}}}


ALLOWED_CUDA = ("g4dn.xlarge, g4dn.2xlarge, g4dn.4xlarge, g5.xlarge, g5.2xlarge, g5.4xlarge, g6.xlarge, g6.2xlarge, "
                "g6.4xlarge, g6e.xlarge, g6e.2xlarge")

CASES = [
    # (label, policy, args, expected messages)
    ("lt allowed type", cost.allowed_instance_types, resource_args(LT, {"instanceType": "g6.xlarge"}, "lt"), []),
    ("lt without type (mixed policy supplies it)", cost.allowed_instance_types, resource_args(LT, {}, "lt"), []),
    ("lt p5", cost.allowed_instance_types,
     resource_args(LT, {"instanceType": "p5.48xlarge"}, "lt", config={"flavor": "cuda"}),
     [f"aws:ec2/launchTemplate:LaunchTemplate 'lt' uses instance type 'p5.48xlarge', which is not allowed for "
      f"flavour cuda: use one of {ALLOWED_CUDA} (larger types need a cost review and an allowedInstanceTypes "
      f"entry in the policy config)."]),
    ("group override outside the neuron flavour", cost.allowed_instance_types,
     resource_args(GROUP, mixed(("inf2.xlarge", "g5.xlarge")), "fleet", config={"flavor": "neuron"}),
     ["aws:autoscaling/group:Group 'fleet' uses instance type 'g5.xlarge', which is not allowed for flavour "
      "neuron: use one of inf2.xlarge, inf2.8xlarge (larger types need a cost review and an allowedInstanceTypes "
      "entry in the policy config)."]),
    ("dev group within the cap", cost.max_group_size, resource_args(GROUP, {"maxSize": 20}, "fleet"), []),
    ("dev group of 500", cost.max_group_size, resource_args(GROUP, {"maxSize": 500}, "fleet"),
     ["Auto Scaling group 'fleet' has maxSize 500, above the cap of 20 for environment 'dev': lower maxSize, or "
      "raise maxSizeByEnvironment in the policy config after a cost review."]),
    ("prod group of 150", cost.max_group_size, resource_args(GROUP, {"maxSize": 150}, "fleet", tags=PROD_TAGS), []),
    ("cap from config", cost.max_group_size,
     resource_args(GROUP, {"maxSize": 60}, "fleet", config={"maxSizeByEnvironment": {"dev": 50}}),
     ["Auto Scaling group 'fleet' has maxSize 60, above the cap of 50 for environment 'dev': lower maxSize, or "
      "raise maxSizeByEnvironment in the policy config after a cost review."]),
    ("dev all spot", cost.spot_share_non_production, resource_args(GROUP, mixed(pct=0), "fleet"), []),
    ("dev on-demand group", cost.spot_share_non_production, resource_args(GROUP, {"maxSize": 4}, "base"),
     ["Auto Scaling group 'base' runs 0% of its maximum capacity on spot in non-production environment 'dev', "
      "below the required 50%: use a mixed instances policy with a lower onDemandPercentageAboveBaseCapacity and a "
      "smaller onDemandBaseCapacity (stack settings spotShare and onDemandBase)."]),
    ("dev mostly on-demand", cost.spot_share_non_production,
     resource_args(GROUP, mixed(base=1, pct=50, max_size=5), "fleet"),
     ["Auto Scaling group 'fleet' runs 40% of its maximum capacity on spot in non-production environment 'dev', "
      "below the required 50%: use a mixed instances policy with a lower onDemandPercentageAboveBaseCapacity and a "
      "smaller onDemandBaseCapacity (stack settings spotShare and onDemandBase)."]),
    ("prod on-demand group", cost.spot_share_non_production,
     resource_args(GROUP, {"maxSize": 4}, "base", tags=PROD_TAGS), []),
    ("log group 14 days", cost.log_retention_bounded, resource_args(LOGS, {"retentionInDays": 14}, "agent"), []),
    ("log group forever", cost.log_retention_bounded, resource_args(LOGS, {}, "agent"),
     ["log group 'agent' keeps logs forever: set retentionInDays (at most 400 days; the stack setting "
      "logRetentionDays)."]),
    ("log group 10 years", cost.log_retention_bounded, resource_args(LOGS, {"retentionInDays": 3653}, "agent"),
     ["log group 'agent' keeps logs 3653 days, above the limit of 400: lower retentionInDays (the stack setting "
      "logRetentionDays)."]),
    ("outputs expire in 7 days", cost.output_retention_bounded,
     resource_args(LIFECYCLE, {"rules": [{"id": "expire", "status": "Enabled", "expiration": {"days": 7}}]}, "lc"), []),
    ("disabled long rule", cost.output_retention_bounded,
     resource_args(LIFECYCLE, {"rules": [{"id": "old", "status": "Disabled", "expiration": {"days": 999}}]}, "lc"), []),
    ("outputs kept a year", cost.output_retention_bounded,
     resource_args(LIFECYCLE, {"rules": [{"id": "expire", "status": "Enabled", "expiration": {"days": 365}}]}, "lc"),
     ["lifecycle rule 'expire' of 'lc' expires objects after 365 days, above the limit of 90: lower the expiration "
      "(the stack setting outputRetentionDays)."]),
]


@pytest.mark.parametrize(("label", "policy", "args", "expected"), CASES, ids=[c[0] for c in CASES])
def test_cost_rules(label, policy, args, expected):
    assert run_policy(policy, args) == expected


def _fleet(max_size: int, types=("g6.xlarge", "g5.xlarge")):
    return [policy_resource(GROUP, "fleet", mixed(types, max_size=max_size))]


def test_budget_within():
    # 3 spot g5.xlarge (most expensive listed): 730 * 3 * 1.006 * (1 - 0.6) = 881.26
    assert run_policy(cost.monthly_cost_budget, stack_args(_fleet(3), {"monthlyBudgetUsd": 1500})) == []


def test_budget_exceeded():
    # 10 spot g5.xlarge: 730 * 10 * 1.006 * 0.4 = 2937.52, plus CloudWatch Logs 10 * 3 GB * $0.53 = 15.90
    assert run_policy(cost.monthly_cost_budget, stack_args(_fleet(10), {"monthlyBudgetUsd": 1500})) == [
        "estimated monthly cost at maximum capacity is $2,953.42 (minimum capacity: $0.00), above the budget of "
        "$1,500.00: lower maxSize, raise the spot share, choose cheaper instance types, or raise monthlyBudgetUsd."]


def test_budget_missing_from_the_policy_config_fails_naming_the_make_target():
    # The CLI passes no budget unless told to (issue 13: plain `pulumi preview --policy-pack` checked every stack
    # against a silent $1,000 default). A missing budget is a violation that says how to pass the stack's own.
    (message,) = run_policy(cost.monthly_cost_budget, stack_args(_fleet(4)))
    assert message.startswith("no monthlyBudgetUsd in the policy config, so the estimate ($")
    assert "run `make preview-aws STACK=<stack>` or `make up STACK=<stack>`" in message
    assert "genai-fleet:monthlyBudgetUsd" in message
    assert "default" not in cost.BUDGET_SCHEMA.properties["monthlyBudgetUsd"]


def test_budget_reports_unpriced_types():
    resources = [policy_resource(GROUP, "fleet", mixed(("g6.xlarge",), max_size=2), region="eu-west-1")]
    assert run_policy(cost.monthly_cost_budget, stack_args(resources, {"monthlyBudgetUsd": 1e6})) == [
        "cannot price Auto Scaling group 'fleet': no eu-west-1 price for g6.xlarge in policies/prices.json: add the "
        "price to policies/prices.json or choose a priced instance type, so the budget check sees every cost."]


def test_every_default_allowed_type_is_priced_in_us_east_1():
    from genai_policies.pricing import load_prices

    table = load_prices()
    for types in cost.DEFAULT_ALLOWED_TYPES.values():
        for itype in types:
            for region in ("us-east-1", "us-west-2"):
                assert table.on_demand(region, itype), (region, itype)
            assert table.spot_discount(itype) > 0, itype
