"""Cost lines beyond instance hours: EBS (root volumes, warm pool), public IPv4, endpoints, CloudWatch.

Each function adds ``LineItem``s at minimum and maximum capacity, with the basis in the note:

* EBS: every running instance pays its launch template's root volume (gp3 GB-month); a warm pool's
  stopped instances pay theirs all month at both capacities (``warmPool.minSize`` instances).
* Public IPv4: every Elastic IP (the NAT gateways') all month; when the workers' subnets assign public
  addresses (``mapPublicIpOnLaunch``), one address per running instance.
* Interface endpoints: per endpoint x subnet (AZ) x hour. Gateway endpoints (S3, DynamoDB) are free and
  listed at $0 so the choice is visible.
* CloudWatch: alarms per metric (target tracking adds two alarms per policy), dashboards, the custom
  metrics the CloudWatch agent config in the stack's SSM parameter publishes per instance (plus the
  same set aggregated per group and the worker's EMF metrics while any instance runs), and log
  ingestion at ``logGbPerInstanceMonth`` per running instance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pulumi_policy import PolicyResource

from .pricing import GroupShape, LineItem, PriceTable

EIP = "aws:ec2/eip:Eip"
SUBNET = "aws:ec2/subnet:Subnet"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SCALING_POLICY = "aws:autoscaling/policy:Policy"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
PARAMETER = "aws:ssm/parameter:Parameter"
WORKER_EMF_METRICS = 15  # runtime/metric_names.py: the worker's per-group metrics (KafkaBacklog excluded)


def _price(table: PriceTable, key: str, region: str) -> float:
    section = table.data.get(key) or {}
    return float(section.get(region, section.get("us-east-1", 0.0)))


def _cw(table: PriceTable, key: str) -> float:
    return float((table.data.get("cloudwatch") or {}).get(key, 0.0))


def root_gb(templates: list[PolicyResource]) -> float:
    """Largest EBS volume total of the group's launch templates (the upper bound, like the instance price)."""
    sizes = [sum(float((m.get("ebs") or {}).get("volumeSize") or 0) for m in t.props.get("blockDeviceMappings") or [])
             for t in templates]
    return max(sizes, default=0.0)


def ebs_items(groups: list[tuple[PolicyResource, GroupShape, list[PolicyResource]]], region: str,
              table: PriceTable, out: list[LineItem]) -> None:
    per_gb = _price(table, "ebsGp3PerGbMonth", region)
    for group, shape, templates in groups:
        gb = root_gb(templates)
        if not gb:
            continue
        out.append(LineItem(f"EBS {group.name}", round(shape.min_size * gb * per_gb, 2),
                            round(shape.max_size * gb * per_gb, 2),
                            f"{gb:g} GB gp3 per running instance x ${per_gb}/GB-month", group.urn))
        warm = int(((group.props.get("warmPool") or {}).get("minSize")) or 0)
        if warm:
            usd = round(warm * gb * per_gb, 2)
            out.append(LineItem(f"EBS warm pool {group.name}", usd, usd,
                                f"{warm} stopped instance(s) x {gb:g} GB gp3 all month", group.urn))


def public_ipv4_items(by_type: Mapping[str, list[PolicyResource]], instances: tuple[int, int], region: str,
                      table: PriceTable, out: list[LineItem]) -> None:
    monthly = _price(table, "publicIpv4Hourly", region) * table.hours
    eips = len(by_type.get(EIP, []))
    if eips:
        usd = round(eips * monthly, 2)
        out.append(LineItem("Public IPv4 (Elastic IPs)", usd, usd, f"{eips} address(es) x ${monthly:.2f}/month"))
    if any(s.props.get("mapPublicIpOnLaunch") in (True, "true") for s in by_type.get(SUBNET, [])):
        out.append(LineItem("Public IPv4 (worker instances)", round(instances[0] * monthly, 2),
                            round(instances[1] * monthly, 2), f"one per running instance x ${monthly:.2f}/month"))


def endpoint_items(by_type: Mapping[str, list[PolicyResource]], region: str, table: PriceTable,
                   out: list[LineItem]) -> None:
    endpoints = by_type.get(ENDPOINT, [])
    gateways = [e for e in endpoints if (e.props.get("vpcEndpointType") or "Gateway") == "Gateway"]
    interfaces = [e for e in endpoints if e not in gateways]
    if gateways:
        names = ", ".join(sorted(str(e.props.get("serviceName", "?")).rsplit(".", 1)[-1] for e in gateways))
        out.append(LineItem("VPC gateway endpoints", 0.0, 0.0, f"{names}: gateway endpoints are free"))
    if interfaces:
        hourly = _price(table, "interfaceEndpointAzHourly", region)
        azs = sum(max(1, len(e.props.get("subnetIds") or [])) for e in interfaces)
        usd = round(azs * hourly * table.hours, 2)
        out.append(LineItem("VPC interface endpoints", usd, usd,
                            f"{len(interfaces)} endpoint(s), {azs} endpoint-AZ(s) x ${hourly}/h"))


def _alarm_metrics(alarm: PolicyResource) -> int:
    queries = alarm.props.get("metricQueries") or []
    return max(1, sum(1 for q in queries if q.get("metricStat"))) if queries else 1


def _tracking_metrics(policy: PolicyResource) -> int:
    spec = (policy.props.get("targetTrackingConfiguration") or {}).get("customizedMetricSpecification") or {}
    return max(1, sum(1 for m in spec.get("metrics") or [] if m.get("metricStat")))


def agent_metrics_per_instance(by_type: Mapping[str, list[PolicyResource]]) -> int:
    """Measurements the CloudWatch agent config (an SSM parameter of the stack) publishes per instance."""
    for param in by_type.get(PARAMETER, []):
        try:
            config = json.loads(param.props.get("insecureValue") or param.props.get("value") or "")
        except (TypeError, ValueError):
            continue
        collected = ((config or {}).get("metrics") or {}).get("metrics_collected") if isinstance(config, dict) else None
        if collected:
            return sum(len(c.get("measurement") or []) * max(1, len(c.get("resources") or []))
                       for c in collected.values() if isinstance(c, Mapping))
    return 0


def cloudwatch_items(by_type: Mapping[str, list[PolicyResource]], instances: tuple[int, int], groups: int,
                     a: Mapping[str, Any], table: PriceTable, out: list[LineItem]) -> None:
    alarm_metrics = sum(_alarm_metrics(x) for x in by_type.get(ALARM, []))
    tracking = [p for p in by_type.get(SCALING_POLICY, []) if p.props.get("policyType") == "TargetTrackingScaling"]
    alarm_metrics += sum(2 * _tracking_metrics(p) for p in tracking)
    fixed = alarm_metrics * _cw(table, "alarmMetricMonth") + len(by_type.get(DASHBOARD, [])) * _cw(
        table, "dashboardMonth")
    if fixed:
        out.append(LineItem("CloudWatch alarms + dashboards", round(fixed, 2), round(fixed, 2),
                            f"{alarm_metrics} alarm metric(s) (target tracking: 2 alarms per policy) x "
                            f"${_cw(table, 'alarmMetricMonth')}, {len(by_type.get(DASHBOARD, []))} dashboard(s) x "
                            f"${_cw(table, 'dashboardMonth')} (3 per account are free)"))
    per_instance = agent_metrics_per_instance(by_type)
    metric = _cw(table, "metricMonth")

    def metrics(n: int) -> float:
        return (n * per_instance + (groups * (per_instance + WORKER_EMF_METRICS) if n else 0)) * metric

    if per_instance:
        out.append(LineItem("CloudWatch custom metrics", round(metrics(instances[0]), 2),
                            round(metrics(instances[1]), 2),
                            f"{per_instance} agent metrics per instance + per group {per_instance} aggregated and "
                            f"{WORKER_EMF_METRICS} worker metrics while any runs, x ${metric}/metric-month"))
    gb = float(a.get("logGbPerInstanceMonth", 0))
    if gb and instances[1]:
        per = gb * (_cw(table, "logsIngestPerGb") + _cw(table, "logsStoragePerGbMonth"))
        out.append(LineItem("CloudWatch Logs", round(instances[0] * per, 2), round(instances[1] * per, 2),
                            f"{gb:g} GB ingested + stored per running instance-month (agent, backend, API logs)"))
