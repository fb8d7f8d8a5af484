"""CDN storage: private outputs bucket readable only by its CloudFront distribution, expiring outputs."""

from __future__ import annotations

import json

import pytest

from components.cdn_storage import CACHING_OPTIMIZED_POLICY_ID, CdnStorage, CdnStorageArgs
from tests.unit.component_harness import build, children, stack_fleet

TOKEN = "genai:storage:CdnStorage"
DIST = "aws:cloudfront/distribution:Distribution"
OUTPUTS = ("bucket_name", "bucket_arn", "cdn_domain", "distribution_arn", "key_group_id", "signing_key_id")


def cdn(cfg):
    return build(lambda: CdnStorage("outputs", CdnStorageArgs(stack=cfg.identity, storage=cfg.storage,
                                                              access=cfg.outputs)), *OUTPUTS)


@pytest.fixture(scope="module")
def dev():
    return cdn(stack_fleet("dev"))


@pytest.fixture(scope="module")
def prod():
    return cdn(stack_fleet("prod"))


def test_bucket_policy_allows_only_this_distribution(dev):
    doc = json.loads(dev.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    allows = [s for s in doc["Statement"] if s["Effect"] == "Allow"]
    assert len(allows) == 1
    allow = allows[0]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    # outputs, and the previews of running jobs (issue 38): nothing else of the bucket
    assert allow["Resource"] == [f"{dev.outputs['bucket_arn']}/outputs/*", f"{dev.outputs['bucket_arn']}/previews/*"]
    assert allow["Condition"] == {"StringEquals": {"AWS:SourceArn": dev.outputs["distribution_arn"]}}
    denies = [s for s in doc["Statement"] if s["Effect"] == "Deny"]
    assert denies and denies[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bucket_is_encrypted_private_and_acl_free(dev):
    rule = dev.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
                   ).inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    pab = dev.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                        "restrictPublicBuckets"))
    assert dev.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"}


def test_distribution_uses_oac_https_and_a_cache_policy(dev):
    oac = dev.one("aws:cloudfront/originAccessControl:OriginAccessControl").inputs
    assert (oac["originAccessControlOriginType"], oac["signingBehavior"], oac["signingProtocol"]) == (
        "s3", "always", "sigv4")
    dist = dev.one(DIST).inputs
    assert dist["enabled"] is True
    origin = dist["origins"][0]
    assert origin["originAccessControlId"] == "outputs-oac-id"
    assert origin["domainName"].endswith(".s3.us-east-1.amazonaws.com")
    assert "s3OriginConfig" not in origin  # no legacy origin access identity
    behavior = dist["defaultCacheBehavior"]
    assert behavior["viewerProtocolPolicy"] in ("https-only", "redirect-to-https")
    assert behavior["cachePolicyId"] == CACHING_OPTIMIZED_POLICY_ID
    assert set(behavior["allowedMethods"]) <= {"GET", "HEAD", "OPTIONS"}


def test_lifecycle_expires_outputs_after_the_configured_days(dev, prod):
    for built, days in ((dev, 3), (prod, 30)):
        rules = {r["id"]: r for r in built.one(
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]}
        assert rules["expire-outputs"]["expiration"]["days"] == days
        assert rules["expire-outputs"]["filter"]["prefix"] == "outputs/"
        assert rules["expire-outputs"]["status"] == "Enabled"
        # issue 38: previews are short-lived whatever the outputs' retention
        assert rules["expire-previews"] == {"id": "expire-previews", "status": "Enabled",
                                            "filter": {"prefix": "previews/"}, "expiration": {"days": 1}}


def _behaviours(built) -> dict[str, dict]:
    dist = built.one(DIST).inputs
    return {"default": dist["defaultCacheBehavior"], **{b["pathPattern"]: b for b in dist["orderedCacheBehaviors"]}}


def test_signed_by_default_every_behaviour_trusts_the_key_group_of_the_stacks_signing_keys(prod):
    """Issue 43: the prod preview shows the key group on the outputs (and previews) behaviour, no public read."""
    group = prod.one("aws:cloudfront/keyGroup:KeyGroup")
    keys = prod.of_type("aws:cloudfront/publicKey:PublicKey")
    assert [k.name for k in keys] == ["outputs-signing-key-k1"] and group.inputs["items"] == [f"{keys[0].name}-id"]
    # the public half is read from the SSM String genai-stack rotate-signing-key writes
    assert keys[0].inputs["encodedKey"] == "mock-value"
    behaviours = _behaviours(prod)
    assert set(behaviours) == {"default", "outputs/*", "previews/*"}
    for pattern, behaviour in behaviours.items():
        assert behaviour["trustedKeyGroups"] == ["outputs-key-group-id"], pattern
        assert behaviour["viewerProtocolPolicy"] == "https-only"
    assert prod.outputs["key_group_id"] == "outputs-key-group-id"


def test_a_rotation_puts_both_keys_in_the_group_and_signs_with_the_one_named():
    built = build(lambda: CdnStorage("outputs", CdnStorageArgs(
        stack=stack_fleet("prod").identity, storage=stack_fleet("prod").storage,
        access=stack_fleet("prod", outputSigningKeys='["k1", "k2"]', outputSigningKey="k2").outputs)), *OUTPUTS)
    assert built.one("aws:cloudfront/keyGroup:KeyGroup").inputs["items"] == [
        "outputs-signing-key-k1-id", "outputs-signing-key-k2-id"]
    assert built.outputs["signing_key_id"] == "outputs-signing-key-k2-id"


def test_public_outputs_have_no_key_group():
    built = cdn(stack_fleet("dev", outputAccess="public"))
    assert not built.of_type("aws:cloudfront/keyGroup:KeyGroup")
    assert all("trustedKeyGroups" not in b for b in _behaviours(built).values())



def test_outputs_and_children(dev):
    assert dev.outputs["cdn_domain"] == "d111111abcdef8.cloudfront.net"
    kids = children(dev, TOKEN)
    assert len(kids) == len(dev.recording.resources) - 1 and all(k.name.startswith("outputs-") for k in kids)
