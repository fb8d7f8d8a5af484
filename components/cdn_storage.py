"""CDN storage: the outputs bucket, reachable only through a CloudFront distribution.

Workers write generated files under ``outputs/`` (``OUTPUTS_PREFIX``); the job record keeps their keys and
the API and the webhook sender hand out ``https://<cdn_domain>/outputs/<key>`` links (runtime/jobs/output_links.py).
The bucket stays private: CloudFront signs its origin requests with an origin access control (SigV4,
always) and the bucket policy admits the CloudFront service principal only for this distribution's ARN.
Outputs expire after ``outputRetentionDays``; job previews (issue 38) live under ``previews/`` and
expire after a day.

``outputAccess: signed`` (the default, issue 43): every behaviour (the default one, ``outputs/*`` and
``previews/*``) trusts one key group and serves only CloudFront-signed URLs (403 otherwise). The key group
holds the public key of each key pair in ``outputSigningKeys`` (two during a rotation), read from the SSM
String ``/genai-fleet/<env>/output-signing-keys/<name>/public`` that ``genai-stack rotate-signing-key``
writes beside the private half (a SecureString only the API and the webhook sender may read).
``outputAccess: public``: no key group; links work for the whole retention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components import naming
from components._s3 import create_private_bucket, deny_insecure_transport, policy_json
from components.config import OutputAccessSettings, StackIdentity, StorageSettings
from runtime.worker.preview_uploader import PREVIEW_PREFIX

OUTPUTS_PREFIX = "outputs"
PREVIEW_RETENTION_DAYS = 1  # S3 lifecycle: expired a day after the upload (deleted within a day or so after)
SIGNED_PREFIXES = (OUTPUTS_PREFIX, PREVIEW_PREFIX)  # behaviours of their own, each trusting the key group (issue 43)
# AWS managed cache policy "Managed-CachingOptimized": long TTLs, gzip/brotli, no cookies or query strings.
CACHING_OPTIMIZED_POLICY_ID = "658327ea-f89d-4fab-a63d-7e88639e58f6"
_ORIGIN_ID = "outputs-bucket"


@dataclass
class CdnStorageArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: the bucket's name prefix and destroy safety (production keeps it)."""
    storage: StorageSettings
    """``FleetConfig.storage``: ``output_retention_days`` (outputs expire after it)."""

    price_class: str = "PriceClass_100"
    """CloudFront price class (edge locations served); PriceClass_All for worldwide low latency."""

    # issue 43: signed outputs
    access: OutputAccessSettings = field(default_factory=OutputAccessSettings)
    """``FleetConfig.outputs``: signed (a key group of ``signing_keys`` on every behaviour) or public."""


class CdnStorage(pulumi.ComponentResource):
    """Private, encrypted outputs bucket behind CloudFront with OAC, HTTPS only, expiring outputs."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    cdn_domain: pulumi.Output[str]
    distribution_arn: pulumi.Output[str]
    key_group_id: pulumi.Output[str] | None  # None: public outputs
    signing_key_id: pulumi.Output[str] | None  # the CloudFront public key id links are signed with
    signing_key_parameter: str | None  # the SecureString holding its private half

    def __init__(self, name: str, args: CdnStorageArgs, opts: pulumi.ResourceOptions | None = None):
        stack = args.stack
        super().__init__("genai:storage:CdnStorage", name, None, opts)
        self._name = name
        private = create_private_bucket(name, self, bucket_prefix=f"{stack.resource_prefix()}-outputs-",
                                        versioned=False, force_destroy=not stack.is_production)
        bucket = private.bucket
        self._create_lifecycle(bucket, args.storage.output_retention_days)
        self._create_key_group(stack, args.access)
        distribution = self._create_distribution(bucket, args.price_class, stack.resource_prefix())
        self._create_policy(bucket, distribution, private.public_access_block)
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.cdn_domain = distribution.domain_name
        self.distribution_arn = distribution.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn,
                               "cdn_domain": self.cdn_domain, "distribution_arn": self.distribution_arn,
                               "key_group_id": self.key_group_id, "signing_key_id": self.signing_key_id})

    def _opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _create_lifecycle(self, bucket: aws.s3.Bucket, retention_days: int) -> None:
        aws.s3.BucketLifecycleConfiguration(
            f"{self._name}-lifecycle", bucket=bucket.id,
            rules=[
                {"id": "expire-outputs", "status": "Enabled", "filter": {"prefix": f"{OUTPUTS_PREFIX}/"},
                 "expiration": {"days": retention_days}},
                # issue 38: job previews are short-lived (runtime/worker/preview_uploader.py)
                {"id": "expire-previews", "status": "Enabled", "filter": {"prefix": f"{PREVIEW_PREFIX}/"},
                 "expiration": {"days": PREVIEW_RETENTION_DAYS}},
                {"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {},
                 "abort_incomplete_multipart_upload": {"days_after_initiation": 1}},
            ],
            opts=self._opts())

    def _create_key_group(self, stack: StackIdentity, access: OutputAccessSettings) -> None:
        """Issue 43: one CloudFront public key per signing key pair, all in one key group (two during a rotation)."""
        self.key_group_id = self.signing_key_id = self.signing_key_parameter = None
        if not access.signed:
            return
        prefix = stack.resource_prefix()
        keys = {}
        for key in access.signing_keys:
            public = aws.ssm.get_parameter_output(name=naming.output_signing_key_parameter(stack, key, "public"),
                                                  opts=pulumi.InvokeOutputOptions(parent=self))
            keys[key] = aws.cloudfront.PublicKey(
                f"{self._name}-signing-key-{key}", name=f"{prefix}-outputs-{key}", encoded_key=public.value,
                comment=f"{prefix} output URL signing key {key}", opts=self._opts())
        group = aws.cloudfront.KeyGroup(f"{self._name}-key-group", name=f"{prefix}-outputs",
                                        items=[k.id for k in keys.values()],
                                        comment=f"{prefix}: signers of output URLs", opts=self._opts())
        self.key_group_id = group.id
        self.signing_key_id = keys[access.signing_key].id
        self.signing_key_parameter = naming.output_signing_key_parameter(stack, access.signing_key, "private")

    def _create_distribution(self, bucket: aws.s3.Bucket, price_class: str,
                             prefix: str) -> aws.cloudfront.Distribution:
        oac = aws.cloudfront.OriginAccessControl(
            f"{self._name}-oac", name=f"{prefix}-outputs", description="CloudFront reads the outputs bucket",
            origin_access_control_origin_type="s3", signing_behavior="always", signing_protocol="sigv4",
            opts=self._opts())
        behavior = {
            "target_origin_id": _ORIGIN_ID,
            "viewer_protocol_policy": "https-only",
            "allowed_methods": ["GET", "HEAD", "OPTIONS"],
            "cached_methods": ["GET", "HEAD"],
            "cache_policy_id": CACHING_OPTIMIZED_POLICY_ID,
            "compress": True,
        }
        if self.key_group_id is not None:  # signed outputs (issue 43): no behaviour serves an unsigned URL
            behavior["trusted_key_groups"] = [self.key_group_id]
        ordered = [{**behavior, "path_pattern": f"{p}/*"} for p in SIGNED_PREFIXES]
        return aws.cloudfront.Distribution(
            f"{self._name}-cdn",
            enabled=True,
            comment=f"{prefix} generated outputs",
            is_ipv6_enabled=True,
            http_version="http2and3",
            price_class=price_class,
            origins=[{"origin_id": _ORIGIN_ID, "domain_name": bucket.bucket_regional_domain_name,
                      "origin_access_control_id": oac.id}],
            default_cache_behavior=behavior,
            ordered_cache_behaviors=ordered,
            restrictions={"geo_restriction": {"restriction_type": "none"}},
            viewer_certificate={"cloudfront_default_certificate": True},
            tags={"Name": f"{self._name}-cdn"},
            opts=self._opts())

    def _create_policy(self, bucket: aws.s3.Bucket, distribution: aws.cloudfront.Distribution,
                       pab: aws.s3.BucketPublicAccessBlock) -> None:
        """Only this distribution (through OAC) may read, and only the outputs and previews prefixes."""

        def render(arns: list[str]) -> str:
            bucket_arn, distribution_arn = arns
            allow = {"Sid": "AllowCloudFrontOutputsRead", "Effect": "Allow",
                     "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
                     "Resource": [f"{bucket_arn}/{OUTPUTS_PREFIX}/*", f"{bucket_arn}/{PREVIEW_PREFIX}/*"],
                     "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}}}
            return policy_json(allow, deny_insecure_transport(bucket_arn))

        aws.s3.BucketPolicy(f"{self._name}-policy", bucket=bucket.id,
                            policy=pulumi.Output.all(bucket.arn, distribution.arn).apply(render),
                            opts=self._opts(depends_on=[pab]))
