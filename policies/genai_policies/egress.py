"""What a set of security groups lets out, read from the resources that declare it.

Egress comes from a group's inline ``egress`` blocks, ``ec2/securityGroupRule`` resources of type
``egress`` and ``vpc/securityGroupEgressRule`` resources. The aws provider removes the allow-all rule
AWS puts on a new VPC security group, so a group that declares nothing lets nothing out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pulumi_policy import PolicyResource

from .graph import get, number, of_type, refers

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ANYWHERE = ("0.0.0.0/0", "::/0")
ALL_PROTOCOLS = ("-1", "all")


@dataclass(frozen=True)
class Egress:
    """One outbound rule: protocol, port range and where to (CIDRs, prefix lists, security groups)."""

    protocol: str
    from_port: int
    to_port: int
    cidrs: tuple[str, ...] = ()
    prefix_lists: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def allows_tcp(self, port: int) -> bool:
        if self.protocol in ALL_PROTOCOLS:
            return True
        return self.protocol in ("tcp", "6") and self.from_port <= port <= self.to_port

    def to_anywhere(self) -> bool:
        return any(c in ANYWHERE for c in self.cidrs)


def _port(value: object, default: int) -> int:
    n = number(value)
    return int(n) if n is not None else default


def _strs(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, (list, tuple)):
        return tuple(v for v in value if isinstance(v, str) and v)
    return ()


def _inline(group: PolicyResource) -> list[Egress]:
    out = []
    for rule in get(group.props, "egress") or []:
        if not hasattr(rule, "get"):
            continue
        out.append(Egress(str(get(rule, "protocol") or "").lower(), _port(get(rule, "fromPort"), 0),
                          _port(get(rule, "toPort"), 65535),
                          _strs(get(rule, "cidrBlocks")) + _strs(get(rule, "ipv6CidrBlocks")),
                          _strs(get(rule, "prefixListIds")), _strs(get(rule, "securityGroups"))))
    return out


def group_egress(group: PolicyResource, resources: Iterable[PolicyResource]) -> list[Egress]:
    """Every outbound rule of ``group``, inline or declared by rule resources that name it."""
    resources = list(resources)
    out = _inline(group)
    for rule in of_type(resources, SG_EGRESS_RULE):
        if refers(rule, "securityGroupId", group):
            protocol = str(get(rule.props, "ipProtocol") or "").lower()
            out.append(Egress(protocol, _port(get(rule.props, "fromPort"), 0), _port(get(rule.props, "toPort"), 65535),
                              _strs(get(rule.props, "cidrIpv4")) + _strs(get(rule.props, "cidrIpv6")),
                              _strs(get(rule.props, "prefixListId")),
                              _strs(get(rule.props, "referencedSecurityGroupId"))))
    for rule in of_type(resources, SG_RULE):
        if get(rule.props, "type") == "egress" and refers(rule, "securityGroupId", group):
            out.append(Egress(str(get(rule.props, "protocol") or "").lower(), _port(get(rule.props, "fromPort"), 0),
                              _port(get(rule.props, "toPort"), 65535),
                              _strs(get(rule.props, "cidrBlocks")) + _strs(get(rule.props, "ipv6CidrBlocks")),
                              _strs(get(rule.props, "prefixListIds")),
                              _strs(get(rule.props, "sourceSecurityGroupId"))))
    return out


def tcp_ports_to_anywhere(rules: Iterable[Egress], ports: Iterable[int]) -> set[int]:
    """The given ports the rules open towards any internet address."""
    rules = list(rules)
    return {p for p in ports if any(r.allows_tcp(p) and r.to_anywhere() for r in rules)}


def describe(rules: Iterable[Egress]) -> str:
    parts = []
    for r in rules:
        where = ", ".join(r.cidrs + r.prefix_lists + r.groups) or "nowhere"
        ports = "all traffic" if r.protocol in ALL_PROTOCOLS else (
            f"{r.protocol} {r.from_port}" if r.from_port == r.to_port else f"{r.protocol} {r.from_port}-{r.to_port}")
        parts.append(f"{ports} to {where}")
    return "; ".join(parts) or "no egress at all"
