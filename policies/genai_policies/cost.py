"""Cost: allowed instance types, group size caps, spot share outside production, retention bounds and
the monthly budget (stack policy over the estimate of ``estimate.py``).

Each threshold is policy config with a default in its ``PolicyConfigSchema``; ``settings`` applies the
defaults in code. The environment a group belongs to is its Environment tag (own, or the provider's
default tags), else the policy config's ``environment``.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from .common import as_list, environment_of, is_production, settings
from .estimate import ASSUMPTION_DEFAULTS, estimate
from .pricing import GroupShape, group_shape

ASG = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"

# Inference-sized GPU and Inferentia2 types, all priced in prices.json. Larger types (p4d, p5, inf2.48xlarge)
# need a cost review: add them to the policy config of the stack that needs them.
DEFAULT_ALLOWED_TYPES = {
    "cuda": ["g4dn.xlarge", "g4dn.2xlarge", "g4dn.4xlarge", "g5.xlarge", "g5.2xlarge", "g5.4xlarge",
             "g6.xlarge", "g6.2xlarge", "g6.4xlarge", "g6e.xlarge", "g6e.2xlarge"],
    "neuron": ["inf2.xlarge", "inf2.8xlarge"],
}

ALLOWED_TYPES_SCHEMA = PolicyConfigSchema(properties={
    "allowedInstanceTypes": {"type": "object", "default": DEFAULT_ALLOWED_TYPES,
                             "description": "Allowed instance types per AMI flavour (cuda, neuron)."},
    "flavor": {"type": "string", "enum": ["any", "cuda", "neuron"], "default": "any",
               "description": "The stack's amiFlavor; 'any' allows the types of every flavour."},
})
MAX_SIZE_SCHEMA = PolicyConfigSchema(properties={
    "maxSizeByEnvironment": {"type": "object", "default": {"prod": 200, "*": 20},
                             "description": "Largest maxSize of one Auto Scaling group per environment; '*' for "
                                            "any environment not listed."},
    "environment": {"type": "string", "default": "",
                    "description": "Environment when resources carry no Environment tag."},
})
SPOT_SHARE_SCHEMA = PolicyConfigSchema(properties={
    "minSpotShare": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                     "description": "Least share of a non-production group's maximum capacity that runs on spot."},
    "environment": {"type": "string", "default": "",
                    "description": "Environment when resources carry no Environment tag."},
})
LOG_RETENTION_SCHEMA = PolicyConfigSchema(properties={
    "maxLogRetentionDays": {"type": "integer", "minimum": 1, "default": 400,
                            "description": "Longest CloudWatch Logs retention allowed (days)."},
})
OUTPUT_RETENTION_SCHEMA = PolicyConfigSchema(properties={
    "maxOutputRetentionDays": {"type": "integer", "minimum": 1, "default": 90,
                               "description": "Longest expiration an S3 lifecycle rule may set (days)."},
})
BUDGET_SCHEMA = PolicyConfigSchema(properties={
    # No default on purpose: a forgotten --policy-pack-config must fail, not check against someone else's number.
    "monthlyBudgetUsd": {"type": "number", "minimum": 1,
                         "description": "Monthly budget (USD) the estimate at maximum capacity must stay within: the "
                                        "stack's genai-fleet:monthlyBudgetUsd, passed by `make preview-aws` / "
                                        "`make up` (tools/preview.py --emit-policy-config)."},
    "region": {"type": "string", "default": ASSUMPTION_DEFAULTS["region"],
               "description": "Region to price resources whose provider sets none."},
    "natDataGbPerInstanceMonth": {"type": "number", "minimum": 0,
                                  "default": ASSUMPTION_DEFAULTS["natDataGbPerInstanceMonth"],
                                  "description": "GB a running worker sends through the NAT gateways a month."},
    "logGbPerInstanceMonth": {"type": "number", "minimum": 0, "default": ASSUMPTION_DEFAULTS["logGbPerInstanceMonth"],
                              "description": "GB of CloudWatch Logs a running worker writes a month."},
    "cloudfrontGbPerInstanceMonth": {"type": "number", "minimum": 0,
                                     "default": ASSUMPTION_DEFAULTS["cloudfrontGbPerInstanceMonth"],
                                     "description": "CloudFront egress GB per running worker instance a month."},
    "mskPartitions": {"type": "integer", "minimum": 0, "default": ASSUMPTION_DEFAULTS["mskPartitions"],
                      "description": "Partitions assumed on an MSK Serverless cluster."},
})


def _instance_types(args: ResourceValidationArgs) -> list[str]:
    props = args.props
    if args.resource_type in (LAUNCH_TEMPLATE, INSTANCE):
        return [props["instanceType"]] if props.get("instanceType") else []
    if args.resource_type == ASG:
        overrides = ((props.get("mixedInstancesPolicy") or {}).get("launchTemplate") or {}).get("overrides") or []
        return [o["instanceType"] for o in overrides if isinstance(o, dict) and o.get("instanceType")]
    return []


def _validate_instance_types(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    types = _instance_types(args)
    if not types:
        return
    cfg = settings(args, ALLOWED_TYPES_SCHEMA)
    flavor = cfg["flavor"]
    table: dict[str, list[str]] = cfg["allowedInstanceTypes"]
    allowed = [t for f, ts in table.items() if flavor in ("any", f) for t in ts]
    for itype in types:
        if itype not in allowed:
            report_violation(f"{args.resource_type} '{args.name}' uses instance type '{itype}', which is not allowed "
                             f"for flavour {flavor}: use one of {', '.join(allowed)} (larger types need a cost "
                             f"review and an allowedInstanceTypes entry in the policy config).", None)


def _cap_for(caps: dict[str, Any], environment: str) -> int | None:
    cap = caps.get(environment, caps.get("*"))
    return None if cap is None else int(cap)


def _validate_max_size(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != ASG:
        return
    cfg = settings(args, MAX_SIZE_SCHEMA)
    env = environment_of(args.props, args.provider, cfg)
    cap = _cap_for(cfg["maxSizeByEnvironment"], env)
    max_size = args.props.get("maxSize")
    if cap is not None and max_size is not None and int(max_size) > cap:
        report_violation(f"Auto Scaling group '{args.name}' has maxSize {int(max_size)}, above the cap of {cap} for "
                         f"environment '{env or '*'}': lower maxSize, or raise maxSizeByEnvironment in the policy "
                         f"config after a cost review.", None)


def spot_share(shape: GroupShape) -> float:
    """Share of the group's maximum capacity that runs on spot."""
    if shape.max_size <= 0:
        return 1.0
    _, spot = shape.split(shape.max_size)
    return spot / shape.max_size


def _validate_spot_share(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != ASG:
        return
    cfg = settings(args, SPOT_SHARE_SCHEMA)
    env = environment_of(args.props, args.provider, cfg)
    if is_production(env):
        return
    shape = group_shape(_as_policy_resource(args), [])
    share, minimum = spot_share(shape), float(cfg["minSpotShare"])
    if share + 1e-9 < minimum:
        report_violation(f"Auto Scaling group '{args.name}' runs {share:.0%} of its maximum capacity on spot in "
                         f"non-production environment '{env or '?'}', below the required {minimum:.0%}: use a mixed "
                         f"instances policy with a lower onDemandPercentageAboveBaseCapacity and a smaller "
                         f"onDemandBaseCapacity (stack settings spotShare and onDemandBase).", None)


def _as_policy_resource(args: ResourceValidationArgs) -> PolicyResource:
    return PolicyResource(args.resource_type, args.props, args.urn, args.name, args.opts, args.provider, None, [], {})


def _validate_log_retention(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != LOG_GROUP:
        return
    limit = int(settings(args, LOG_RETENTION_SCHEMA)["maxLogRetentionDays"])
    days = args.props.get("retentionInDays")
    if not days:
        report_violation(f"log group '{args.name}' keeps logs forever: set retentionInDays (at most {limit} days; "
                         f"the stack setting logRetentionDays).", None)
    elif int(days) > limit:
        report_violation(f"log group '{args.name}' keeps logs {int(days)} days, above the limit of {limit}: lower "
                         f"retentionInDays (the stack setting logRetentionDays).", None)


def _validate_output_retention(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != LIFECYCLE:
        return
    limit = int(settings(args, OUTPUT_RETENTION_SCHEMA)["maxOutputRetentionDays"])
    for rule in as_list(args.props.get("rules")):
        days = (rule.get("expiration") or {}).get("days")
        if rule.get("status", "Enabled") == "Enabled" and days and int(days) > limit:
            report_violation(f"lifecycle rule '{rule.get('id', '?')}' of '{args.name}' expires objects after "
                             f"{int(days)} days, above the limit of {limit}: lower the expiration (the stack "
                             f"setting outputRetentionDays).", None)


def _validate_budget(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    cfg = settings(args, BUDGET_SCHEMA)
    result = estimate(args.resources, cfg)
    for message, urn in result.unpriced:
        report_violation(f"cannot price {message}: add the price to policies/prices.json or choose a priced "
                         f"instance type, so the budget check sees every cost.", urn)
    if cfg.get("monthlyBudgetUsd") is None:
        report_violation(f"no monthlyBudgetUsd in the policy config, so the estimate (${result.max_usd:,.2f} at "
                         f"maximum capacity) is checked against nothing: run `make preview-aws STACK=<stack>` or "
                         f"`make up STACK=<stack>`, which pass the stack's genai-fleet:monthlyBudgetUsd "
                         f"(`make policy-config` writes the file for --policy-pack-config).", None)
        return
    budget = float(cfg["monthlyBudgetUsd"])
    if result.max_usd > budget:
        report_violation(f"estimated monthly cost at maximum capacity is ${result.max_usd:,.2f} (minimum capacity: "
                         f"${result.min_usd:,.2f}), above the budget of ${budget:,.2f}: lower maxSize, raise the "
                         f"spot share, choose cheaper instance types, or raise monthlyBudgetUsd.", None)


allowed_instance_types = ResourceValidationPolicy(
    name="allowed-instance-types",
    description="Limits launch templates, instances and Auto Scaling groups to the allowed instance types.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=ALLOWED_TYPES_SCHEMA,
    validate=_validate_instance_types,
)
max_group_size = ResourceValidationPolicy(
    name="max-group-size",
    description="Caps the maximum size of each Auto Scaling group per environment.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=MAX_SIZE_SCHEMA,
    validate=_validate_max_size,
)
spot_share_non_production = ResourceValidationPolicy(
    name="spot-share-non-production",
    description="Requires non-production Auto Scaling groups to run at least a minimum share of capacity on spot.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=SPOT_SHARE_SCHEMA,
    validate=_validate_spot_share,
)
log_retention_bounded = ResourceValidationPolicy(
    name="log-retention-bounded",
    description="Requires a bounded retention period on every CloudWatch log group.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=LOG_RETENTION_SCHEMA,
    validate=_validate_log_retention,
)
output_retention_bounded = ResourceValidationPolicy(
    name="output-retention-bounded",
    description="Bounds how long S3 lifecycle rules keep objects before they expire.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=OUTPUT_RETENTION_SCHEMA,
    validate=_validate_output_retention,
)
monthly_cost_budget = StackValidationPolicy(
    name="monthly-cost-budget",
    description="Keeps the estimated monthly cost at maximum capacity within the budget.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=BUDGET_SCHEMA,
    validate=_validate_budget,
)

POLICIES = [allowed_instance_types, max_group_size, spot_share_non_production, log_retention_bounded,
            output_retention_bounded, monthly_cost_budget]
