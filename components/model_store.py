"""Model store: the S3 bucket holding model artifacts and the manifest the workers read.

Key layout and manifest format: docs/model-store.md (code: runtime/model_store/). Objects are written by
``tools/model_upload.py`` and read by the worker's model cache; versioning keeps every earlier manifest
and artifact, and old versions expire after ``noncurrent_version_days``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components._s3 import create_private_bucket, deny_insecure_transport, policy_json
from components.config import StackIdentity


@dataclass
class ModelStoreArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: the bucket's name prefix; production stacks keep it on destroy unless empty."""

    noncurrent_version_days: int = 30
    """Days an overwritten or deleted object version (old manifest, replaced artifact) is kept."""


class ModelStore(pulumi.ComponentResource):
    """Versioned, encrypted, private bucket for model artifacts, TLS only, stale uploads cleaned up."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:storage:ModelStore", name, None, opts)
        stack = args.stack
        private = create_private_bucket(name, self, bucket_prefix=f"{stack.resource_prefix()}-models-",
                                        versioned=True, force_destroy=not stack.is_production)
        bucket = private.bucket
        self._create_lifecycle(name, bucket, args.noncurrent_version_days)
        self._create_policy(name, bucket, private.public_access_block)
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})

    def _create_lifecycle(self, name: str, bucket: aws.s3.Bucket, noncurrent_days: int) -> None:
        """Model uploads are multipart: abort the ones left unfinished; expire superseded versions."""
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id,
            rules=[
                {"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {},
                 "abort_incomplete_multipart_upload": {"days_after_initiation": 7}},
                {"id": "expire-noncurrent-versions", "status": "Enabled", "filter": {},
                 "noncurrent_version_expiration": {"noncurrent_days": noncurrent_days}},
            ],
            opts=pulumi.ResourceOptions(parent=self))

    def _create_policy(self, name: str, bucket: aws.s3.Bucket, pab: aws.s3.BucketPublicAccessBlock) -> None:
        aws.s3.BucketPolicy(f"{name}-policy", bucket=bucket.id,
                            policy=bucket.arn.apply(lambda arn: policy_json(deny_insecure_transport(arn))),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=[pab]))
