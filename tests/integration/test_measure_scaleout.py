"""`make measure-scaleout` against the local AWS endpoint (moto server), as far as moto goes.

moto starts instances "running" and InService at once and ignores lifecycle hooks, so the measured
phases are near zero here; what is checked is the procedure: the right group found by its tags,
desired capacity raised by one, the new instance followed, exactly that instance removed with the
capacity put back, and the distribution file written in the form the planner reads.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from planner import measure, workload

pytestmark = pytest.mark.integration


def _groups(moto_endpoint: str, env: str) -> tuple[str, measure.Clients]:
    make = lambda s: boto3.client(s, endpoint_url=moto_endpoint, region_name="us-east-1")  # noqa: E731
    clients = measure.Clients(make("autoscaling"), make("ec2"), make("cloudwatch"))
    subnet = clients.ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    lt = clients.ec2.create_launch_template(LaunchTemplateName=f"lt-{env}", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "g6.xlarge"})["LaunchTemplate"]["LaunchTemplateId"]
    tags = [{"Key": "Project", "Value": "genai-fleet", "PropagateAtLaunch": True},
            {"Key": "Environment", "Value": env, "PropagateAtLaunch": True}]
    spot = f"cluster-spot-{env}"
    clients.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=spot, MinSize=0, MaxSize=3, DesiredCapacity=1, VPCZoneIdentifier=subnet, Tags=tags,
        MixedInstancesPolicy={"LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": lt},
                                                 "Overrides": [{"InstanceType": "g6.xlarge"}]},
                              "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": 0}})
    clients.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=f"cluster-ondemand-{env}", MinSize=1, MaxSize=1, DesiredCapacity=1,
        VPCZoneIdentifier=subnet, Tags=tags, LaunchTemplate={"LaunchTemplateId": lt})
    return spot, clients


def test_one_scale_out_is_recorded_and_undone(moto_endpoint, tmp_path):
    env = "m" + uuid.uuid4().hex[:8]
    spot, clients = _groups(moto_endpoint, env)
    assert measure.find_spot_group(clients.autoscaling, env) == spot
    before = clients.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[spot])["AutoScalingGroups"][0]
    old = {i["InstanceId"] for i in before["Instances"]}

    run = measure.Recorder(clients, spot, "dev", poll=0.05, timeout=30).run()

    after = clients.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[spot])["AutoScalingGroups"][0]
    assert after["DesiredCapacity"] == before["DesiredCapacity"] == 1
    assert run["instance_id"] not in old and run["instance_id"] not in {i["InstanceId"] for i in after["Instances"]}
    assert 0 <= run["ec2_launch_s"] <= run["ready_s"] < 30
    out = tmp_path / "scaleout.json"
    measure.write_distribution(out, [run])
    data = measure.write_distribution(out, [run])  # a second run appends
    assert len(data["runs"]) == 2
    w = workload.load("sdxl", str(out))
    assert w.cold_phases["ec2_launch"].kind == "empirical" and len(w.cold_phases["ec2_launch"].samples) == 2
    assert json.loads(out.read_text())["cold_phases"]["preload_per_model"] == {"samples": [0.0]}


def test_refuses_a_full_group_and_names_the_fix(moto_endpoint):
    env = "m" + uuid.uuid4().hex[:8]
    spot, clients = _groups(moto_endpoint, env)
    clients.autoscaling.update_auto_scaling_group(AutoScalingGroupName=spot, MaxSize=1)
    with pytest.raises(measure.MeasureError, match="maximum size"):
        measure.Recorder(clients, spot, "dev", poll=0.05, timeout=5).run()
    with pytest.raises(measure.MeasureError, match="--group"):
        measure.find_spot_group(clients.autoscaling, "nosuchenv")
