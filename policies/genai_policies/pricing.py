"""Prices and instance groups: the price table of ``policies/prices.json`` and what one Auto Scaling group costs.

Every instance of a group is priced at the **most expensive** instance type the group may launch (its
mixed-instances overrides, else its launch template's type): spot pools and capacity-based allocation
may land on any listed type, so the budget check takes the upper bound. A group without a mixed
instances policy is all on-demand. A mixed group runs ``onDemandBaseCapacity`` on-demand instances, then
``onDemandPercentageAboveBaseCapacity`` percent (AWS default 100) of the rest on-demand and the
remainder on spot at the family's typical spot discount. Weighted capacity is left out.

The whole stack's estimate (``estimate.py``) adds these groups to the other line items
(``pricing_extras.py``: EBS, public IPv4, endpoints, CloudWatch; ``estimate.py``: NAT, MSK, CloudFront).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pulumi_policy import PolicyResource

from .common import provider_region

PRICES_FILE = Path(__file__).resolve().parent.parent / "prices.json"
DEFAULT_REGION = "us-east-1"

ASG = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"



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


def resource_region(resource: PolicyResource, default: str) -> str:
    """The resource's own region, else its provider's, else ``default``."""
    own = (resource.props or {}).get("region")
    return own if isinstance(own, str) and own else provider_region(resource.provider) or default


def launch_templates_of(group: PolicyResource, templates: list[PolicyResource]) -> list[PolicyResource]:
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
        types = [t.props["instanceType"] for t in launch_templates_of(group, templates)
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


__all__ = ["GroupShape", "LineItem", "PriceTable", "group_cost", "group_shape", "launch_templates_of",
           "load_prices", "resource_region"]
