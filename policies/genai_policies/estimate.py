"""Monthly cost estimate of a stack at minimum and at maximum capacity, from ``policies/prices.json``.

What is priced (730 hours a month), and how:

* EC2, per Auto Scaling group, at ``minSize`` and at ``maxSize`` instances, each at the most expensive
  type the group may launch, spot at the family's typical discount: ``pricing.py``.
* EBS (root volumes, warm pool), public IPv4 addresses, VPC endpoints and CloudWatch (alarms,
  dashboards, agent metrics, logs): ``pricing_extras.py``.
* NAT gateways: each ``aws:ec2/natGateway:NatGateway`` (or the count an ``awsx:ec2:Vpc`` strategy
  implies) x hourly price, plus ``natDataGbPerInstanceMonth`` GB of processed data per running worker
  (AWS API calls, logs and metrics; S3 and DynamoDB use the free gateway endpoints and do not cross it).
* MSK Serverless: each cluster x (cluster-hour + ``mskPartitions`` x partition-hour).
* CloudFront: when the stack has a distribution, ``cloudfrontGbPerInstanceMonth`` GB of egress per
  running worker instance (a busy worker making a 1.5 MB image every 3 s writes about 1.3 TB a month;
  the default 500 GB assumes about 40 % of that is fetched through the CDN).

API Gateway, Lambda, DynamoDB, SQS and S3 storage are usage-priced (no charge while idle) and small next
to GPU hours at the fleet sizes this project targets; they are listed at $0 with that basis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import PolicyResource

from . import pricing_extras
from .pricing import (
    ASG,
    DEFAULT_REGION,
    LAUNCH_TEMPLATE,
    LineItem,
    PriceTable,
    group_cost,
    group_shape,
    launch_templates_of,
    load_prices,
    resource_region,
)

NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
AWSX_VPC = "awsx:ec2:Vpc"
MSK_SERVERLESS = "aws:msk/serverlessCluster:ServerlessCluster"
CLOUDFRONT = "aws:cloudfront/distribution:Distribution"
USAGE_PRICED = ("aws:lambda/function:Function", "aws:apigatewayv2/api:Api", "aws:dynamodb/table:Table",
                "aws:sqs/queue:Queue")

# Defaults of the estimate's assumptions; the cost policy's config schema exposes each one.
ASSUMPTION_DEFAULTS: dict[str, Any] = {
    "region": DEFAULT_REGION,
    "natDataGbPerInstanceMonth": 20,
    "logGbPerInstanceMonth": 3,
    "cloudfrontGbPerInstanceMonth": 500,
    "mskPartitions": 10,
}


@dataclass
class Estimate:
    items: list[LineItem] = field(default_factory=list)
    unpriced: list[tuple[str, str | None]] = field(default_factory=list)  # (message, urn)

    @property
    def min_usd(self) -> float:
        return round(sum(i.min_usd for i in self.items), 2)

    @property
    def max_usd(self) -> float:
        return round(sum(i.max_usd for i in self.items), 2)


def _awsx_nat_count(vpc: PolicyResource) -> int:
    strategy = ((vpc.props.get("natGateways") or {}).get("strategy") or "OnePerAz")
    try:
        azs = int(vpc.props.get("numberOfAvailabilityZones") or 3)
    except (TypeError, ValueError):
        azs = 3
    return {"None": 0, "Single": 1}.get(strategy, azs)


def estimate(resources: Iterable[PolicyResource], assumptions: Mapping[str, Any] | None = None,
             table: PriceTable | None = None) -> Estimate:
    """Estimate the monthly cost of the resources at minimum and at maximum capacity."""
    table = table or load_prices()
    a = {**ASSUMPTION_DEFAULTS, **(assumptions or {})}
    resources = list(resources)
    by_type: dict[str, list[PolicyResource]] = {}
    for r in resources:
        by_type.setdefault(r.resource_type, []).append(r)
    out = Estimate()
    hours = table.hours
    instances_min = instances_max = 0
    priced_groups = []
    region = a["region"]
    for group in by_type.get(ASG, []):
        templates = launch_templates_of(group, by_type.get(LAUNCH_TEMPLATE, []))
        shape = group_shape(group, by_type.get(LAUNCH_TEMPLATE, []))
        region = resource_region(group, a["region"])
        lo, at, problem = group_cost(shape, shape.min_size, region, table)
        hi, _, _ = group_cost(shape, shape.max_size, region, table)
        if problem:
            out.unpriced.append((problem, group.urn))
            continue
        instances_min += shape.min_size
        instances_max += shape.max_size
        priced_groups.append((group, shape, templates))
        od, spot = shape.split(shape.max_size)
        out.items.append(LineItem(f"EC2 {group.name}", round(lo, 2), round(hi, 2),
                                  f"{shape.min_size}-{shape.max_size} x {at}; at max {od:g} on-demand + {spot:g} spot",
                                  group.urn))
    instances = (instances_min, instances_max)
    extras: list[LineItem] = []
    pricing_extras.ebs_items(priced_groups, region, table, extras)
    out.items += extras
    _network_items(by_type, a, table, hours, out, instances)
    extras = []
    pricing_extras.public_ipv4_items(by_type, instances, region, table, extras)
    pricing_extras.endpoint_items(by_type, region, table, extras)
    pricing_extras.cloudwatch_items(by_type, instances, len(priced_groups), a, table, extras)
    out.items += extras
    if any(by_type.get(t) for t in USAGE_PRICED):
        out.items.append(LineItem("API, Lambda, DynamoDB, SQS, S3 requests", 0.0, 0.0,
                                  "usage-priced: nothing while idle; small next to GPU hours (not estimated)"))
    if by_type.get(CLOUDFRONT):
        gb = float(a["cloudfrontGbPerInstanceMonth"])
        per = gb * table.cloudfront_per_gb
        out.items.append(LineItem("CloudFront egress", round(per * instances_min, 2), round(per * instances_max, 2),
                                  f"{gb:g} GB per worker instance-month"))
    return out


def _network_items(by_type: Mapping[str, list[PolicyResource]], a: Mapping[str, Any], table: PriceTable,
                   hours: float, out: Estimate, instances: tuple[int, int] = (0, 0)) -> None:
    nats = by_type.get(NAT_GATEWAY, [])
    count = len(nats) + sum(_awsx_nat_count(v) for v in by_type.get(AWSX_VPC, []))
    if count:
        region = resource_region(nats[0], a["region"]) if nats else a["region"]
        price = table.nat(region)
        if price is None:
            out.unpriced.append((f"NAT gateway: no {region} price in policies/prices.json", None))
        else:
            gb = float(a["natDataGbPerInstanceMonth"])
            fixed = count * price["hourly"] * hours
            lo, hi = (fixed + n * gb * price["perGb"] for n in instances)
            out.items.append(LineItem("NAT gateways", round(lo, 2), round(hi, 2),
                                      f"{count} x {hours:g} h x ${price['hourly']} + {gb:g} GB processed per running "
                                      f"instance x ${price['perGb']}"))
    for cluster in by_type.get(MSK_SERVERLESS, []):
        region = resource_region(cluster, a["region"])
        price = table.msk(region)
        if price is None:
            out.unpriced.append((f"MSK Serverless '{cluster.name}': no {region} price in policies/prices.json",
                                 cluster.urn))
            continue
        partitions = int(a["mskPartitions"])
        usd = hours * (price["clusterHour"] + partitions * price["partitionHour"])
        out.items.append(LineItem(f"MSK Serverless {cluster.name}", round(usd, 2), round(usd, 2),
                                  f"1 cluster + {partitions} partitions x {hours:g} h", cluster.urn))
