"""EC2 vCPU quotas the fleet draws on: which quota an instance type counts against, and how much a stack needs.

EC2 limits running instances per instance-family class and purchase option, counted in vCPUs (Service
Quotas, service code ``ec2``; Amazon EC2 User Guide, "On-Demand Instance quotas" and "Spot Instance
quotas"). Every G and VT instance launched on demand counts against "Running On-Demand G and VT
instances" (L-DB2E81BA), every G and VT spot instance against "All G and VT Spot Instance Requests"
(L-3819A6DF); Inferentia and Trainium have their own pairs. A new account often holds 0 vCPUs of these,
and then nothing fails where a user looks: ``make ami`` cannot start its g5 build instance and the Auto
Scaling groups record the refusal only in their activity history. So the preview
(``components/prerequisites.py``) and ``genai-ami`` (``tools/ami_preflight.py``) compare the quotas with
the need first.

The need is the worst case the groups allow, per quota (``stack_needs``):

    on-demand base group:  onDemandBase x vCPUs of the first instance type (the only type it launches)
    spot (mixed) group:    N = maxSize - onDemandBase instances, p = round((1 - spotShare) x 100) % on demand
        on demand:  ceil(N x p / 100) x vCPUs of the largest configured type of the quota's class
        spot:       ceil(N x (100 - p) / 100) x the same

Every instance above the base may be the largest type the group lists, so the largest type sizes it.
Running instances outside the stack use the same quotas: the comparison leaves them out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SERVICE_CODE = "ec2"
ON_DEMAND = "on-demand"
SPOT = "spot"


@dataclass(frozen=True)
class Quota:
    code: str
    name: str


# Quota codes per instance-family class and purchase option. G and VT and Inf: Service Quotas' EC2 list
# (the codes the issue names and AWS's console shows); P and Trn as published in the same list.
QUOTAS: dict[str, dict[str, Quota]] = {
    "G and VT": {ON_DEMAND: Quota("L-DB2E81BA", "Running On-Demand G and VT instances"),
                 SPOT: Quota("L-3819A6DF", "All G and VT Spot Instance Requests")},
    "P": {ON_DEMAND: Quota("L-417A185B", "Running On-Demand P instances"),
          SPOT: Quota("L-7212CCBC", "All P4, P3 and P2 Spot Instance Requests")},
    "P5": {ON_DEMAND: Quota("L-417A185B", "Running On-Demand P instances"),
           SPOT: Quota("L-C4BD4855", "All P5 Spot Instance Requests")},
    "Inf": {ON_DEMAND: Quota("L-1945791B", "Running On-Demand Inf instances"),
            SPOT: Quota("L-B5D1601B", "All Inf Spot Instance Requests")},
    "Trn": {ON_DEMAND: Quota("L-2C3B7624", "Running On-Demand Trn instances"),
            SPOT: Quota("L-6B0D517C", "All Trn Spot Instance Requests")},
}
# Every family the stack's flavours (components/config_settings.FLAVOR_FAMILIES) and the AMI builds use.
FAMILY_CLASS: dict[str, str] = {
    "g4dn": "G and VT", "g5": "G and VT", "g6": "G and VT", "g6e": "G and VT", "gr6": "G and VT",
    "p3": "P", "p4d": "P", "p4de": "P", "p5": "P5", "p5e": "P5",
    "inf2": "Inf", "trn1": "Trn", "trn1n": "Trn", "trn2": "Trn",
}


class UnknownInstanceFamilyError(ValueError):
    """An instance type whose quota this module does not know (add its family to FAMILY_CLASS)."""


def quota_for(instance_type: str, market: str) -> Quota:
    family = instance_type.split(".", 1)[0]
    if family not in FAMILY_CLASS:
        raise UnknownInstanceFamilyError(f"no EC2 vCPU quota is known for {instance_type} (family {family}): add the "
                                    f"family to components/vcpu_quotas.FAMILY_CLASS")
    return QUOTAS[FAMILY_CLASS[family]][market]


@dataclass(frozen=True)
class Need:
    """vCPUs one quota must allow, and the sizing that gave them (for the message)."""

    quota: Quota
    market: str
    vcpus: int
    why: str


def _add(needs: dict[tuple[str, str], Need], quota: Quota, market: str, vcpus: int, why: str) -> None:
    if vcpus <= 0:
        return
    key = (quota.code, market)
    if key in needs:
        old = needs[key]
        needs[key] = Need(quota, market, old.vcpus + vcpus, f"{old.why} + {why}")
    else:
        needs[key] = Need(quota, market, vcpus, why)


def stack_needs(instance_types: Sequence[str], vcpus: Mapping[str, int], max_size: int, on_demand_base: int,
                on_demand_percent: int) -> list[Need]:
    """Per quota, the vCPUs the stack's groups can run at their maximum (the module docstring's formula)."""
    needs: dict[tuple[str, str], Need] = {}
    if on_demand_base > 0:
        first = instance_types[0]
        _add(needs, quota_for(first, ON_DEMAND), ON_DEMAND, on_demand_base * vcpus[first],
             f"onDemandBase {on_demand_base} x {vcpus[first]} vCPUs ({first})")
    above = max_size - on_demand_base
    counts = {ON_DEMAND: math.ceil(above * on_demand_percent / 100),
              SPOT: math.ceil(above * (100 - on_demand_percent) / 100)}
    for market, count in counts.items():
        by_quota: dict[Quota, list[str]] = {}
        for itype in instance_types:
            by_quota.setdefault(quota_for(itype, market), []).append(itype)
        for quota, types in by_quota.items():
            largest = max(types, key=lambda t: vcpus[t])
            _add(needs, quota, market, count * vcpus[largest],
                 f"{count} {market} instance(s) above the base x {vcpus[largest]} vCPUs ({largest}, the largest type)")
    return list(needs.values())


def request_command(region: str, quota: Quota, vcpus: int) -> str:
    return (f"aws service-quotas request-service-quota-increase --region {region} --service-code {SERVICE_CODE} "
            f"--quota-code {quota.code} --desired-value {vcpus}")


def console_link(region: str, quota: Quota) -> str:
    return f"https://{region}.console.aws.amazon.com/servicequotas/home/services/{SERVICE_CODE}/quotas/{quota.code}"


def shortfall(need: Need, applied: float, region: str) -> str:
    """The message for a quota below the need: the quota, its value, the need and how to request more."""
    return (f"the EC2 quota \"{need.quota.name}\" ({need.quota.code}) in {region} is {applied:,.0f} vCPUs, below the "
            f"{need.vcpus:,} the {need.market} instances need ({need.why}): request {need.vcpus:,} with `"
            f"{request_command(region, need.quota, need.vcpus)}` or at {console_link(region, need.quota)} "
            f"(instances already running count against it too)")


def shortfalls(needs: Sequence[Need], applied: Mapping[str, float | None], region: str) -> list[str]:
    """One message per quota whose applied value (``None``: unknown, not checked) is below the need."""
    out = []
    for need in needs:
        value = applied.get(need.quota.code)
        if value is not None and value < need.vcpus:
            out.append(shortfall(need, value, region))
    return out
