"""Old AMIs are deregistered (``genai-stack prune-amis``, tools/ami_prune.py) against moto: what a channel names
now or as its rollback target stays, as do the newest images; the rest go with their snapshots."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.unit.test_ami_build import GOOD_TAGS, _register_ami
from tools import stack_setup
from tools.ami_prune import prune_amis


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def _dated(ec2: Any, order: list[str]) -> None:
    """moto stamps images registered in the same second alike: date them in registration order."""

    def patch(parsed: dict[str, Any], **_: Any) -> None:
        for image in parsed.get("Images", []):
            if image["ImageId"] in order:
                image["CreationDate"] = f"2026-01-{order.index(image['ImageId']) + 1:02d}T00:00:00.000Z"

    ec2.meta.events.register("after-call.ec2.DescribeImages", patch)


def _publish(ssm: Any, channel: str, *images: str) -> None:
    for image in images:  # each put is a version: the history promote-ami's rollback reads
        ssm.put_parameter(Name=f"/genai-fleet/ami/cuda/{channel}", Value=image, Type="String", Overwrite=True)


def _snapshots(ec2: Any, image: str) -> list[str]:
    (found,) = ec2.describe_images(ImageIds=[image])["Images"]
    return [m["Ebs"]["SnapshotId"] for m in found["BlockDeviceMappings"]]


@pytest.fixture
def account(aws):
    ec2, ssm = aws.client("ec2"), aws.client("ssm")
    images = [_register_ami(ec2, GOOD_TAGS) for _ in range(6)]  # a1 oldest ... a6 newest
    other = _register_ami(ec2, {**GOOD_TAGS, "Flavor": "neuron"})
    _dated(ec2, [*images, other])
    _publish(ssm, "latest", images[4], images[5])  # latest: a6, rollback target a5
    _publish(ssm, "prod", images[1])  # prod: a2
    return ec2, ssm, images, other


def test_prune_keeps_what_channels_name_and_the_newest_and_removes_the_rest_with_snapshots(account):
    ec2, ssm, (a1, a2, a3, a4, a5, a6), other = account
    snapshots = {image: _snapshots(ec2, image) for image in (a1, a3, a4)}
    assert all(snapshots.values())
    result = prune_amis(ssm, ec2, "cuda", keep=1)
    assert sorted(result["kept"]) == sorted([a6, a5, a2])
    assert sorted(result["deregistered"]) == sorted([a1, a3, a4])
    left = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert left == {a2, a5, a6, other}
    gone = [s for ids in snapshots.values() for s in ids]
    assert sorted(result["snapshots_deleted"]) == sorted(gone)
    existing = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not existing & set(gone)
    assert set(_snapshots(ec2, a2)) <= existing


def test_dry_run_changes_nothing_and_keep_must_be_positive(account):
    ec2, ssm, images, _ = account
    result = prune_amis(ssm, ec2, "cuda", keep=4, dry_run=True)
    assert result["deregistered"] == [images[0]]  # a3 to a6 are the newest four, a2 is prod's
    assert len(ec2.describe_images(Owners=["self"])["Images"]) == 7
    with pytest.raises(ValueError, match="keep at least the newest image"):
        prune_amis(ssm, ec2, "cuda", keep=0)


def test_the_console_script_runs_it(account, capsys, monkeypatch):
    ec2, ssm, images, _ = account
    monkeypatch.setattr(stack_setup, "_clients", lambda region, endpoint: (ssm, ec2))  # the dated client
    assert stack_setup.main(["prune-amis", "--flavor", "cuda", "--keep", "5", "--region", "us-east-1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["deregistered"] == [images[0]] and result["snapshots_deleted"]  # a2 to a6 kept
