"""The monthly estimate against a hand computation for one configuration (us-east-1, 730 h).

Configuration:
  spot group   mixed g6.xlarge/g5.xlarge, 0..10 instances, base 0, 20 % on-demand above base
  base group   launch template g6.xlarge, 2..2 instances, no mixed policy (all on-demand)
  2 NAT gateways, 1 CloudFront distribution, 1 MSK Serverless cluster; default assumptions
  (100 GB NAT data, 500 GB CloudFront egress per instance-month, 10 MSK partitions).
"""

from __future__ import annotations

import pytest

from policies.genai_policies.pricing import estimate
from tests.unit._policy_helpers import policy_resource

H = 730
G5, G6 = 1.006, 0.8048  # us-east-1 on-demand USD/h (prices.json); g5 is the most expensive listed type
G5_SPOT = 1 - 0.6       # g5 family spot discount 60 %


def _stack():
    lt = policy_resource("aws:ec2/launchTemplate:LaunchTemplate", "base-lt",
                         {"id": "lt-base", "instanceType": "g6.xlarge"})
    spot = policy_resource("aws:autoscaling/group:Group", "fleet-spot", {"minSize": 0, "maxSize": 10,
                           "mixedInstancesPolicy": {
                               "instancesDistribution": {"onDemandBaseCapacity": 0,
                                                         "onDemandPercentageAboveBaseCapacity": 20},
                               "launchTemplate": {"overrides": [{"instanceType": "g6.xlarge"},
                                                                {"instanceType": "g5.xlarge"}]}}})
    base = policy_resource("aws:autoscaling/group:Group", "fleet-base",
                           {"minSize": 2, "maxSize": 2, "launchTemplate": {"id": "lt-base", "version": "$Latest"}},
                           deps={"launchTemplate": [lt]})
    nats = [policy_resource("aws:ec2/natGateway:NatGateway", f"nat-{i}", {}) for i in range(2)]
    cdn = policy_resource("aws:cloudfront/distribution:Distribution", "cdn", {})
    msk = policy_resource("aws:msk/serverlessCluster:ServerlessCluster", "kafka", {})
    return [lt, spot, base, *nats, cdn, msk]


def test_estimate_matches_hand_computation():
    spot_max = H * (2 * G5 + 8 * G5 * G5_SPOT)          # 10 instances: 2 on-demand, 8 spot = 3818.776
    base = H * 2 * G6                                   # 1175.008 at min and at max
    nat = 2 * 0.045 * H + 100 * 0.045                   # 70.2
    cdn_min, cdn_max = 2 * 500 * 0.085, 12 * 500 * 0.085  # 85.0, 510.0 (2 and 12 instances)
    msk = H * (0.75 + 10 * 0.0015)                      # 558.45
    result = estimate(_stack())
    items = {i.item: (i.min_usd, i.max_usd) for i in result.items}
    assert items == {
        "EC2 fleet-spot": (0.0, pytest.approx(spot_max, abs=0.005)),
        "EC2 fleet-base": (pytest.approx(base, abs=0.005), pytest.approx(base, abs=0.005)),
        "NAT gateways": (pytest.approx(nat), pytest.approx(nat)),
        "CloudFront egress": (pytest.approx(cdn_min), pytest.approx(cdn_max)),
        "MSK Serverless kafka": (pytest.approx(msk), pytest.approx(msk)),
    }
    assert result.min_usd == 1888.66
    assert result.max_usd == 6132.44
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
    assert items == {"NAT gateways": pytest.approx(3 * 0.045 * H + 100 * 0.045)}
