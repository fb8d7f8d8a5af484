"""The account-side deploy steps (tools/stack_setup.py) against moto: webhook secret, API key, AMI promotion."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runtime.api.auth import SsmKeyStore, hash_key, parse_key
from tests.unit.test_ami_build import GOOD_TAGS, _as_aws_reports, _register_ami
from tools import ami_build, stack_setup


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def _clients(session: Any) -> tuple[Any, Any]:
    ec2 = session.client("ec2")
    _as_aws_reports(ec2)  # each client needs the patch: moto drops encryption and ImdsSupport
    return session.client("ssm"), ec2


def _publish(session: Any, tags: dict[str, str] | None = None) -> str:
    ec2 = session.client("ec2")
    _as_aws_reports(ec2)
    ami = _register_ami(ec2, tags or GOOD_TAGS)
    ami_build.publish_ami(session.client("ssm"), "cuda", ami, tags or GOOD_TAGS)
    return ami


def test_webhook_secret_is_created_once_and_rotated_on_request(aws):
    ssm, cfg = aws.client("ssm"), stack_setup.stack_settings("dev")
    first = stack_setup.ensure_webhook_secret(ssm, cfg)
    assert first == {"parameter": "/genai-fleet/dev/webhook-secret", "created": True, "rotated": False}
    param = ssm.get_parameter(Name="/genai-fleet/dev/webhook-secret", WithDecryption=True)["Parameter"]
    assert param["Type"] == "SecureString" and len(bytes.fromhex(param["Value"])) == 32
    again = stack_setup.ensure_webhook_secret(ssm, cfg)
    assert again["created"] is False
    assert ssm.get_parameter(Name=param["Name"], WithDecryption=True)["Parameter"]["Value"] == param["Value"]
    stack_setup.ensure_webhook_secret(ssm, cfg, rotate=True)
    assert ssm.get_parameter(Name=param["Name"], WithDecryption=True)["Parameter"]["Value"] != param["Value"]


def test_api_key_is_stored_as_its_hash_and_found_by_the_authorizers_store(aws):
    ssm, cfg = aws.client("ssm"), stack_setup.stack_settings("prod")
    out = stack_setup.mint_api_key(ssm, cfg, "alice", quota_per_day=500)
    key_id = parse_key(out["key"])
    assert out["parameter"] == f"/genai-fleet/prod/api-keys/{key_id}"
    stored = ssm.get_parameter(Name=out["parameter"], WithDecryption=True)["Parameter"]["Value"]
    assert out["key"] not in stored and json.loads(stored)["sha256"] == hash_key(out["key"])
    record = SsmKeyStore(ssm, "/genai-fleet/prod/api-keys").lookup(key_id)
    assert (record.name, record.quota_per_day) == ("alice", 500)
    with pytest.raises(stack_setup.SetupError, match="needs a name"):
        stack_setup.mint_api_key(ssm, cfg, "  ")


def test_promote_copies_the_checked_latest_image_and_rollback_restores_the_previous(aws):
    ssm, ec2 = _clients(aws)
    with pytest.raises(stack_setup.SetupError, match=r"/genai-fleet/ami/cuda/latest does not exist: build and "
                                                     r"check an image first \(`make ami FLAVOR=cuda`\)"):
        stack_setup.promote_ami(ssm, ec2, "cuda", "prod")
    first = _publish(aws)
    out = stack_setup.promote_ami(ssm, ec2, "cuda", "prod")
    assert out == {"parameter": "/genai-fleet/ami/cuda/prod", "ami_id": first, "previous": None, "rollback": False}
    param = ssm.get_parameter(Name="/genai-fleet/ami/cuda/prod")["Parameter"]
    assert (param["Value"], param["DataType"]) == (first, "aws:ec2:image")

    second = _publish(aws, {**GOOD_TAGS, "Name": "genai-fleet-cuda-second"})
    # latest moved on; prod did not (dev builds never reach prod by themselves).
    assert ssm.get_parameter(Name="/genai-fleet/ami/cuda/prod")["Parameter"]["Value"] == first
    assert stack_setup.promote_ami(ssm, ec2, "cuda", "prod")["ami_id"] == second
    back = stack_setup.promote_ami(ssm, ec2, "cuda", "prod", rollback=True)
    assert (back["ami_id"], back["previous"]) == (first, second)
    assert ssm.get_parameter(Name="/genai-fleet/ami/cuda/prod")["Parameter"]["Value"] == first


def test_promote_refuses_an_image_that_fails_the_checks_and_the_latest_channel(aws):
    ssm, ec2 = _clients(aws)
    wrong = _register_ami(ec2, {**GOOD_TAGS, "Flavor": "neuron"})
    with pytest.raises(stack_setup.SetupError, match=r"refusing to promote: .*tag Flavor is 'neuron', expected 'cuda'"):
        stack_setup.promote_ami(ssm, ec2, "cuda", "prod", ami_id=wrong)
    assert ssm.describe_parameters()["Parameters"] == []
    with pytest.raises(stack_setup.SetupError, match="`latest` is written by `make ami`"):
        stack_setup.promote_ami(ssm, ec2, "cuda", "latest")
    with pytest.raises(stack_setup.SetupError, match="nothing to roll back"):
        stack_setup.promote_ami(ssm, ec2, "cuda", "prod", rollback=True)
