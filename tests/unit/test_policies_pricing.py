"""The monthly estimate against a hand computation for one configuration (us-east-1, 730 h).

Configuration:
  spot group   mixed g6.xlarge/g5.xlarge, 0..10 instances, base 0, 20 % on-demand above base
  base group   launch template g6.xlarge, 2..2 instances, no mixed policy (all on-demand)
  2 NAT gateways with 2 Elastic IPs, an S3 gateway endpoint and an SSM interface endpoint in 2 subnets,
  1 CloudFront distribution, 1 MSK Serverless cluster, a 200 GB root volume, a warm pool of 1 on the base
  group, an alarm on 2 metrics, a target-tracking policy on 2 metrics, a dashboard and a CloudWatch agent
  config of 3 measurements per instance; default assumptions (20 GB NAT data and 3 GB logs per running
  instance-month, 500 GB CloudFront egress per instance-month, 10 MSK partitions).
"""

from __future__ import annotations

import json

import pytest

from genai_policies.estimate import estimate
from tests.unit._policy_helpers import policy_resource

H = 730
G5, G6 = 1.006, 0.8048  # us-east-1 on-demand USD/h (prices.json); g5 is the most expensive listed type
G5_SPOT = 1 - 0.6       # g5 family spot discount 60 %


def _stack():
    lt = policy_resource("aws:ec2/launchTemplate:LaunchTemplate", "base-lt",
                         {"id": "lt-base", "instanceType": "g6.xlarge",
                          "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"volumeSize": 200}}]})
    spot = policy_resource("aws:autoscaling/group:Group", "fleet-spot", {"minSize": 0, "maxSize": 10,
                           "mixedInstancesPolicy": {
                               "instancesDistribution": {"onDemandBaseCapacity": 0,
                                                         "onDemandPercentageAboveBaseCapacity": 20},
                               "launchTemplate": {"overrides": [{"instanceType": "g6.xlarge"},
                                                                {"instanceType": "g5.xlarge"}]}}})
    base = policy_resource("aws:autoscaling/group:Group", "fleet-base",
                           {"minSize": 2, "maxSize": 2, "launchTemplate": {"id": "lt-base", "version": "$Latest"},
                            "warmPool": {"minSize": 1, "poolState": "Stopped"}},
                           deps={"launchTemplate": [lt]})
    nats = [policy_resource("aws:ec2/natGateway:NatGateway", f"nat-{i}", {}) for i in range(2)]
    eips = [policy_resource("aws:ec2/eip:Eip", f"nat-{i}", {"domain": "vpc"}) for i in range(2)]
    endpoints = [policy_resource("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", {
                     "vpcEndpointType": "Gateway", "serviceName": "com.amazonaws.us-east-1.s3"}),
                 policy_resource("aws:ec2/vpcEndpoint:VpcEndpoint", "ssm", {
                     "vpcEndpointType": "Interface", "serviceName": "com.amazonaws.us-east-1.ssm",
                     "subnetIds": ["subnet-a", "subnet-b"]})]
    stat = {"metricStat": {"stat": "Sum"}}
    alarm = policy_resource("aws:cloudwatch/metricAlarm:MetricAlarm", "alarm",
                            {"metricQueries": [stat, stat, {"expression": "m1 / m2"}]})
    tracking = policy_resource("aws:autoscaling/policy:Policy", "target", {
        "policyType": "TargetTrackingScaling", "targetTrackingConfiguration": {
            "customizedMetricSpecification": {"metrics": [stat, stat, {"expression": "m1 / m2"}]}}})
    dashboard = policy_resource("aws:cloudwatch/dashboard:Dashboard", "dash", {})
    agent = {"metrics": {"metrics_collected": {"mem": {"measurement": ["mem_used_percent"]},
                                               "disk": {"measurement": ["used_percent"], "resources": ["/", "/m"]}}}}
    param = policy_resource("aws:ssm/parameter:Parameter", "cwagent", {"insecureValue": json.dumps(agent)})
    cdn = policy_resource("aws:cloudfront/distribution:Distribution", "cdn", {})
    msk = policy_resource("aws:msk/serverlessCluster:ServerlessCluster", "kafka", {})
    return [lt, spot, base, *nats, *eips, *endpoints, alarm, tracking, dashboard, param, cdn, msk]


def test_estimate_matches_hand_computation():
    spot_max = H * (2 * G5 + 8 * G5 * G5_SPOT)          # 10 instances: 2 on-demand, 8 spot = 3818.776
    base = H * 2 * G6                                   # 1175.008 at min and at max
    nat = 2 * 0.045 * H                                 # 65.7 a month, plus 20 GB per running instance at $0.045
    cdn_min, cdn_max = 2 * 500 * 0.085, 12 * 500 * 0.085  # 85.0, 510.0 (2 and 12 instances)
    msk = H * (0.75 + 10 * 0.0015)                      # 558.45
    # metrics: 3 per instance, and per group (2) 3 aggregated + 15 worker metrics while any instance runs
    metrics_min, metrics_max = (2 * 3 + 2 * 18) * 0.30, (12 * 3 + 2 * 18) * 0.30  # 12.6, 21.6
    result = estimate(_stack())
    items = {i.item: (i.min_usd, i.max_usd) for i in result.items}
    approx = pytest.approx
    assert items == {
        "EC2 fleet-spot": (0.0, approx(spot_max, abs=0.005)),
        "EC2 fleet-base": (approx(base, abs=0.005), approx(base, abs=0.005)),
        "EBS fleet-spot": (0.0, approx(10 * 200 * 0.08)),                       # 160.0
        "EBS fleet-base": (approx(2 * 200 * 0.08), approx(2 * 200 * 0.08)),     # 32.0
        "EBS warm pool fleet-base": (approx(200 * 0.08), approx(200 * 0.08)),   # 16.0: stopped, all month
        "NAT gateways": (approx(nat + 2 * 20 * 0.045), approx(nat + 12 * 20 * 0.045)),  # 67.5, 76.5
        "Public IPv4 (Elastic IPs)": (approx(2 * 0.005 * H), approx(2 * 0.005 * H)),  # 7.3
        "VPC gateway endpoints": (0.0, 0.0),
        "VPC interface endpoints": (approx(2 * 0.01 * H), approx(2 * 0.01 * H)),  # 14.6
        "CloudWatch alarms + dashboards": (approx((2 + 2 * 2) * 0.10 + 3.0), approx(3.6)),
        "CloudWatch custom metrics": (approx(metrics_min), approx(metrics_max)),
        "CloudWatch Logs": (approx(2 * 3 * 0.53), approx(12 * 3 * 0.53)),        # 3.18, 19.08
        "CloudFront egress": (approx(cdn_min), approx(cdn_max)),
        "MSK Serverless kafka": (approx(msk), approx(msk)),
    }
    assert result.min_usd == 1975.24
    assert result.max_usd == 6412.92  # the sum of the rounded lines
    assert all(i.note for i in result.items), "every line says how it was computed"
    assert result.unpriced == []


def test_group_without_launch_template_dependency_falls_back_to_matching_id():
    resources = _stack()
    base = next(r for r in resources if r.name == "fleet-base")
    base.property_dependencies.clear()
    items = {i.item: i.max_usd for i in estimate(resources).items}
    assert items["EC2 fleet-base"] == pytest.approx(H * 2 * G6, abs=0.005)


def test_awsx_vpc_nat_strategy_counts_gateways():
    vpc = policy_resource("awsx:ec2:Vpc", "vpc", {"natGateways": {"strategy": "OnePerAz"},
                                                  "numberOfAvailabilityZones": 3})
    items = {i.item: i.max_usd for i in estimate([vpc]).items}
    assert items == {"NAT gateways": pytest.approx(3 * 0.045 * H)}  # no instances: no processed data
