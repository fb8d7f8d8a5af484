"""Publish an image's ComfyUI node catalog beside its AMI id (``make ami``, tools/ami_build.py).

The catalog (runtime/node_catalog.py) is recorded on the build instance by install-comfyui-nodes.sh and downloaded
by Packer to ``packer/node-catalog-<flavor>.json``. It is too big for an SSM parameter (4 KB standard, 8 KB
advanced; a ComfyUI 0.3.64 catalog is about 15 KB before any custom pack), so it goes to S3:
``s3://genai-fleet-amis-<account>-<region>/node-catalogs/<flavor>/<ami-id>.json``. ``make ami`` runs before any
stack exists, so the driver owns that bucket: it creates it when missing, private (public access blocked),
encrypted (SSE-S3), versioned and TLS-only. Nothing else writes there; a stack's API reads only its image's
object (components/api.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.node_catalog import CatalogError, NodeCatalog, catalog_location
from tools.packer_output import AmiBuildError


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    """The catalog bucket, created private, encrypted, versioned and TLS-only when it does not exist."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise AmiBuildError(f"cannot use the node catalog bucket {bucket}: {exc}") from exc
    args: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**args)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}))


def publish_node_catalog(s3: Any, account: str, region: str, flavor: str, ami_id: str, path: Path,
                         revision: str = "") -> str:
    """Upload the catalog at ``path`` for ``ami_id``; returns its ``s3://`` URI (what GENAI_NODE_CATALOG names)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AmiBuildError(f"the build wrote no node catalog at {path} (install-comfyui-nodes.sh and the file "
                            f"download provisioner in packer/build.pkr.hcl make it): {exc}") from exc
    try:
        catalog = NodeCatalog.from_json(text)
    except CatalogError as exc:
        raise AmiBuildError(f"{path}: {exc}") from exc
    bucket, key = catalog_location(account, region, flavor, ami_id)
    ensure_bucket(s3, bucket, region)
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType="application/json",
                  ServerSideEncryption="AES256",
                  Metadata={"ami-id": ami_id, "git-revision": revision, "node-classes": str(len(catalog.nodes))})
    return f"s3://{bucket}/{key}"
