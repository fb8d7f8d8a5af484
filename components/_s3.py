"""Private S3 bucket building blocks shared by the model store and the CDN storage components.

Not a component of its own: the helpers declare children of the component that calls them, so the
resource tree stays ``ModelStore -> bucket, encryption, ...`` and every name keeps the caller's prefix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class PrivateBucket:
    """The bucket and the public access block a bucket policy must wait for."""

    bucket: aws.s3.Bucket
    public_access_block: aws.s3.BucketPublicAccessBlock


def create_private_bucket(name: str, parent: pulumi.Resource, *, bucket_prefix: str, versioned: bool,
                          force_destroy: bool) -> PrivateBucket:
    """Bucket with SSE-S3 (bucket key on), every public access switch on, ACLs disabled, optional versioning."""
    opts = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(f"{name}-bucket", bucket_prefix=bucket_prefix, force_destroy=force_destroy,
                           opts=opts)
    aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=bucket.id,
                                   rule={"object_ownership": "BucketOwnerEnforced"}, opts=opts)
    pab = aws.s3.BucketPublicAccessBlock(f"{name}-public-access", bucket=bucket.id, block_public_acls=True,
                                         block_public_policy=True, ignore_public_acls=True,
                                         restrict_public_buckets=True, opts=opts)
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}, "bucket_key_enabled": True}],
        opts=opts)
    if versioned:
        aws.s3.BucketVersioning(f"{name}-versioning", bucket=bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=opts)
    return PrivateBucket(bucket=bucket, public_access_block=pab)


def deny_insecure_transport(bucket_arn: str) -> dict:
    """Policy statement refusing every request that does not use TLS."""
    return {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def policy_json(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
