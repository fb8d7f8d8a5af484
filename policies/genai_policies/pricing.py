"""Monthly cost estimate of a stack at minimum and at maximum capacity, from ``policies/prices.json``.

What is priced (730 hours a month), and how:

* EC2, per Auto Scaling group, at ``minSize`` and at ``maxSize`` instances. Every instance of a group
  is priced at the **most expensive** instance type the group may launch (its mixed-instances
  overrides, else its launch template's type): spot pools and capacity-based allocation may land on
  any listed type, so the budget check takes the upper bound. A group without a mixed instances
  policy is all on-demand. A mixed group runs ``onDemandBaseCapacity`` on-demand instances, then
  ``onDemandPercentageAboveBaseCapacity`` percent (AWS default 100) of the rest on-demand and the
  remainder on spot at the family's typical spot discount. Weighted capacity is left out.
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

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pulumi_policy import PolicyResource

from .common import provider_region

PRICES_FILE = Path(__file__).resolve().parent.parent / "prices.json"
DEFAULT_REGION = "us-east-1"

ASG = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
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


@dataclass(frozen=True)
class PriceTable:
    data: Mapping[str, Any]

    @property
    def hours(self) -> float:
        return float(self.data.get("hoursPerMonth", 730))

    def on_demand(self, region: str, instance_type: str) -> float | None:
        price = self.data["ec2OnDemandHourly"].get(region, {}).get(instance_type)
        return float(price) if price is not None else None

    def spot_discount(self, instance_type: str) -> float:
        return float(self.data["spotDiscount"].get(instance_type.split(".")[0], 0.0))

    def nat(self, region: str) -> Mapping[str, float] | None:
        return self.data["natGateway"].get(region)

    def msk(self, region: str) -> Mapping[str, float] | None:
        return self.data["mskServerless"].get(region)

    @property
    def cloudfront_per_gb(self) -> float:
        return float(self.data["cloudfront"]["perGb"])

    def priced_types(self) -> set[str]:
        return {t for region in self.data["ec2OnDemandHourly"].values() for t in region}


@cache
def load_prices(path: str | None = None) -> PriceTable:
    return PriceTable(json.loads(Path(path or PRICES_FILE).read_text()))


@dataclass
class LineItem:
    item: str
    min_usd: float
    max_usd: float
    note: str = ""
    urn: str | None = None


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


@dataclass(frozen=True)
class GroupShape:
    """What the estimate needs to know about one Auto Scaling group."""

    name: str
    min_size: int
    max_size: int
    instance_types: tuple[str, ...]
    mixed: bool
    on_demand_base: int = 0
    on_demand_percent: float = 100.0

    def split(self, capacity: int) -> tuple[float, float]:
        """(on-demand, spot) instances when the group runs ``capacity`` instances."""
        if not self.mixed:
            return float(capacity), 0.0
        base = min(self.on_demand_base, capacity)
        above = capacity - base
        on_demand = base + above * self.on_demand_percent / 100.0
        return on_demand, capacity - on_demand


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _region(resource: PolicyResource, default: str) -> str:
    own = (resource.props or {}).get("region")
    return own if isinstance(own, str) and own else provider_region(resource.provider) or default


def _launch_template_of(group: PolicyResource, templates: list[PolicyResource]) -> list[PolicyResource]:
    """The launch template(s) a group uses: by dependency, by id or name, else every template (upper bound)."""
    deps = [r for key in ("launchTemplate", "mixedInstancesPolicy") for r in group.property_dependencies.get(key, [])
            if r.resource_type == LAUNCH_TEMPLATE]
    if deps:
        return deps
    spec = group.props.get("launchTemplate") or {}
    mixed_spec = ((group.props.get("mixedInstancesPolicy") or {}).get("launchTemplate") or {}).get(
        "launchTemplateSpecification") or {}
    wanted_ids = {spec.get("id"), mixed_spec.get("launchTemplateId")} - {None}
    wanted_names = {spec.get("name"), mixed_spec.get("launchTemplateName")} - {None}
    matched = [t for t in templates
               if (t.props.get("id") in wanted_ids) or (t.props.get("name") in wanted_names) or t.name in wanted_names]
    return matched if len(matched) == 1 else templates


def group_shape(group: PolicyResource, templates: list[PolicyResource]) -> GroupShape:
    props = group.props
    mixed = props.get("mixedInstancesPolicy")
    types: list[str] = []
    base, percent = 0, 100.0
    if mixed:
        dist = mixed.get("instancesDistribution") or {}
        base = _int(dist.get("onDemandBaseCapacity"), 0)
        pct = dist.get("onDemandPercentageAboveBaseCapacity")
        percent = 100.0 if pct is None else float(pct)
        overrides = (mixed.get("launchTemplate") or {}).get("overrides") or []
        types = [o["instanceType"] for o in overrides if isinstance(o, Mapping) and o.get("instanceType")]
    if not types:
        types = [t.props["instanceType"] for t in _launch_template_of(group, templates)
                 if t.props.get("instanceType")]
    return GroupShape(name=group.name, min_size=_int(props.get("minSize")), max_size=_int(props.get("maxSize")),
                      instance_types=tuple(dict.fromkeys(types)), mixed=bool(mixed), on_demand_base=base,
                      on_demand_percent=percent)


def group_cost(shape: GroupShape, capacity: int, region: str, table: PriceTable) -> tuple[float, str, str | None]:
    """Monthly USD of ``capacity`` instances, the type it was priced at, and a problem (unpriced type)."""
    prices = {t: table.on_demand(region, t) for t in shape.instance_types}
    missing = [t for t, p in prices.items() if p is None]
    if not shape.instance_types:
        return 0.0, "", f"Auto Scaling group '{shape.name}' names no instance type the estimate can find"
    if missing:
        return 0.0, "", (f"Auto Scaling group '{shape.name}': no {region} price for {', '.join(missing)} in "
                         f"policies/prices.json")
    priced_at = max(prices, key=lambda t: prices[t] or 0.0)
    hourly = prices[priced_at] or 0.0
    on_demand, spot = shape.split(capacity)
    monthly = table.hours * (on_demand * hourly + spot * hourly * (1.0 - table.spot_discount(priced_at)))
    return monthly, priced_at, None


def _awsx_nat_count(vpc: PolicyResource) -> int:
    strategy = ((vpc.props.get("natGateways") or {}).get("strategy") or "OnePerAz")
    azs = _int(vpc.props.get("numberOfAvailabilityZones"), 3) or 3
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
        templates = _launch_template_of(group, by_type.get(LAUNCH_TEMPLATE, []))
        shape = group_shape(group, by_type.get(LAUNCH_TEMPLATE, []))
        region = _region(group, a["region"])
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
    from . import pricing_extras  # imports this module's LineItem; imported here to avoid a cycle

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
        region = _region(nats[0], a["region"]) if nats else a["region"]
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
        region = _region(cluster, a["region"])
        price = table.msk(region)
        if price is None:
            out.unpriced.append((f"MSK Serverless '{cluster.name}': no {region} price in policies/prices.json",
                                 cluster.urn))
            continue
        partitions = int(a["mskPartitions"])
        usd = hours * (price["clusterHour"] + partitions * price["partitionHour"])
        out.items.append(LineItem(f"MSK Serverless {cluster.name}", round(usd, 2), round(usd, 2),
                                  f"1 cluster + {partitions} partitions x {hours:g} h", cluster.urn))


__all__ = ["Estimate", "GroupShape", "LineItem", "PriceTable", "estimate", "group_cost", "group_shape",
           "load_prices"]
