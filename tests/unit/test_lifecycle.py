"""IMDSv2 client against the fake IMDS, the lifecycle watcher's notices, and the Auto Scaling wrapper."""

from __future__ import annotations

import time

import httpx
import pytest

from fleetdev.local.fake_imds import FakeIMDS
from runtime.worker.aws import Boto3AutoScaling, LifecycleActionNotFound, RecordingAutoScaling
from runtime.worker.imds import IMDSClient, IMDSError
from runtime.worker.lifecycle import REBALANCE, SPOT, TERMINATING, Lifecycle, LifecycleWatcher


@pytest.fixture
def imds():
    with FakeIMDS(instance_id="i-0abc") as fake:
        yield fake


def test_imdsv2_needs_a_token_and_the_client_uses_one(imds):
    assert httpx.get(f"{imds.url}/latest/meta-data/instance-id").status_code == 401
    client = IMDSClient(imds.url)
    assert client.instance_id() == "i-0abc"
    assert client.spot_instance_action() is None and client.rebalance_recommendation() is None
    assert client.target_lifecycle_state() == "InService" and client.auto_scaling_group() == "genai-workers"
    assert [r for r in imds.requests if r[0] == "PUT"] == [("PUT", "/latest/api/token")]
    imds._tokens.clear()  # token revoked: the client fetches a new one and retries once
    assert client.instance_id() == "i-0abc"


def test_unreachable_imds_raises():
    with pytest.raises(IMDSError):
        IMDSClient("http://127.0.0.1:9", timeout=0.2).instance_id()


def test_watcher_reports_each_notice_once(imds):
    seen = []
    watcher = LifecycleWatcher(IMDSClient(imds.url), seen.append, poll_seconds=0.05)
    assert watcher.poll_once() == []
    imds.set_spot_interruption(in_seconds=120)
    imds.set_rebalance()
    imds.set_target_lifecycle_state("Warmed:Stopped")
    watcher.poll_once()
    watcher.poll_once()
    assert [n.kind for n in seen] == [SPOT, TERMINATING, REBALANCE]
    assert 100 < seen[0].seconds_left() <= 121
    assert seen[1].deadline is None and seen[1].detail == "Warmed:Stopped"


def test_watcher_thread_and_http_control(imds):
    seen = []
    watcher = LifecycleWatcher(IMDSClient(imds.url), seen.append, poll_seconds=0.05).start()
    try:
        httpx.post(f"{imds.url}/_control", json={"target_lifecycle_state": "Terminated"})
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watcher.stop()
    assert [n.kind for n in seen] == [TERMINATING]


def test_lifecycle_completes_each_action_once_and_dedupes_protection():
    rec = RecordingAutoScaling()
    life = Lifecycle(rec, "i-1", "workers", "launch", "drain")
    assert life.complete_launching() and not life.complete_launching()
    life.protect(True)
    life.protect(True)
    life.protect(False)
    life.complete_terminating()
    assert [(c["op"], c.get("hook"), c.get("protected")) for c in rec.calls] == [
        ("complete_lifecycle_action", "launch", None), ("set_instance_protection", None, True),
        ("set_instance_protection", None, False), ("complete_lifecycle_action", "drain", None)]
    assert not Lifecycle(rec, "i-1", None, "launch", "drain").complete_launching()  # no group: nothing to do


def test_fatal_boot_abandons_the_launch_and_marks_unhealthy():
    rec = RecordingAutoScaling()
    life = Lifecycle(rec, "i-1", "workers", "launch", "drain")
    assert life.abandon_launching()
    assert not life.complete_launching()  # the launching action is answered once, ABANDON first
    assert life.mark_unhealthy("backend never ready")
    assert [(c["op"], c.get("result"), c.get("healthy")) for c in rec.calls] == [
        ("complete_lifecycle_action", "ABANDON", None), ("set_instance_health", None, False)]


def test_boto3_autoscaling_against_moto(moto_endpoint):
    import boto3

    asg = boto3.client("autoscaling", endpoint_url=moto_endpoint, region_name="us-east-1")
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1")
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    asg.create_launch_configuration(LaunchConfigurationName="lc-w", ImageId="ami-12c6146b", InstanceType="t3.micro")
    asg.create_auto_scaling_group(AutoScalingGroupName="asg-w", LaunchConfigurationName="lc-w", MinSize=1,
                                  MaxSize=1, DesiredCapacity=1, VPCZoneIdentifier=subnet)
    instance = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["asg-w"])["AutoScalingGroups"][0][
        "Instances"][0]["InstanceId"]
    wrapped = Boto3AutoScaling(asg)
    assert wrapped.group_of(instance) == "asg-w"
    wrapped.set_instance_protection("asg-w", instance, True)
    described = asg.describe_auto_scaling_instances(InstanceIds=[instance])["AutoScalingInstances"][0]
    assert described["ProtectedFromScaleIn"] is True
    life = Lifecycle(wrapped, instance, "asg-w", "launch", None)
    assert life.complete_launching() is False  # moto answers an error; logged, never fatal
    assert issubclass(LifecycleActionNotFound, Exception)
