"""The node catalog is published beside the AMI id (issue 41, point 2): ``make ami`` uploads the catalog the build
recorded to the account's catalog bucket (created private, encrypted, versioned, TLS-only when missing), keyed by
the AMI id, where the API of a stack running that image reads it (runtime/api/workflow_check.py). Against moto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from runtime.api.workflow_check import s3_catalog
from runtime.node_catalog import catalog_location
from tools.node_catalog_publish import ensure_bucket, publish_node_catalog
from tools.packer_output import AmiBuildError

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui" / "node_catalog_0.3.64.json"


def test_a_new_catalog_bucket_is_private_encrypted_versioned_and_tls_only(aws_clients):
    s3 = aws_clients("s3")
    bucket = "genai-fleet-amis-123456789012-us-east-1"
    ensure_bucket(s3, bucket, "us-east-1")
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    with pytest.raises(ClientError, match="Forbidden"):  # moto evaluates the policy: this endpoint is plain HTTP
        s3.put_object(Bucket=bucket, Key="x", Body=b"x")
    ensure_bucket(s3, bucket, "us-east-1")  # an existing bucket is used as it is


def test_the_catalog_lands_beside_the_ami_id_and_the_api_reads_it(aws_clients):
    s3 = aws_clients("s3")
    bucket, key = catalog_location("123456789012", "us-west-2", "cuda", "ami-0abc41")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})  # no TLS policy
    uri = publish_node_catalog(s3, "123456789012", "us-west-2", "cuda", "ami-0abc41", RECORDED, "f" * 40)
    assert uri == f"s3://{bucket}/{key}" == "s3://genai-fleet-amis-123456789012-us-west-2/node-catalogs/cuda/ami-0abc41.json"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256" and head["Metadata"]["ami-id"] == "ami-0abc41"
    catalog = s3_catalog(s3, uri)()
    assert catalog is not None and "GenaiFleetSolarize" in catalog.nodes
    assert s3_catalog(s3, uri.replace("ami-0abc41", "ami-0other"))() is None  # another image: not published


def test_no_catalog_or_a_bad_one_stops_the_publication(aws_clients, tmp_path):
    s3 = aws_clients("s3")
    with pytest.raises(AmiBuildError, match=r"the build wrote no node catalog at .*file download provisioner"):
        publish_node_catalog(s3, "123456789012", "us-east-1", "cuda", "ami-1", tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 2}')
    with pytest.raises(AmiBuildError, match="'schema' must be 1"):
        publish_node_catalog(s3, "123456789012", "us-east-1", "cuda", "ami-1", bad)
