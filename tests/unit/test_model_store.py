"""Model store: the bucket's properties, and the key layout / manifest library the CLI and workers share."""

from __future__ import annotations

import json

import pytest

from components.model_store import ModelStore, ModelStoreArgs
from runtime.model_store import (
    LayoutError,
    Manifest,
    ManifestError,
    ModelEntry,
    ModelFile,
    ModelNotFoundError,
    artifact_key,
    validate_model_id,
)
from tests.unit.component_harness import build, children, stack_fleet

TOKEN = "genai:storage:ModelStore"
SHA = "ab" * 32


def store(stack):
    identity = stack_fleet(stack).identity
    return build(lambda: ModelStore("models", ModelStoreArgs(stack=identity)), "bucket_name", "bucket_arn")


@pytest.fixture(scope="module")
def dev():
    return store("dev")


def test_bucket_is_versioned_encrypted_and_private(dev):
    assert dev.one("aws:s3/bucketVersioning:BucketVersioning").inputs["versioningConfiguration"] == {
        "status": "Enabled"}
    rule = dev.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
                   ).inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
    pab = dev.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                        "restrictPublicBuckets"))
    assert dev.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"}


def test_policy_only_denies_plain_http(dev):
    doc = json.loads(dev.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    assert [s["Effect"] for s in doc["Statement"]] == ["Deny"]
    assert doc["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_lifecycle_aborts_stale_multipart_uploads(dev):
    rules = {r["id"]: r for r in dev.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
                                        ).inputs["rules"]}
    assert rules["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 30


def test_outputs_and_children(dev):
    assert dev.outputs["bucket_arn"] == f"arn:aws:s3:::{dev.outputs['bucket_name']}"
    kids = children(dev, TOKEN)
    assert len(kids) == len(dev.recording.resources) - 1 and all(k.name.startswith("models-") for k in kids)
    assert dev.one("aws:s3/bucket:Bucket").inputs["bucketPrefix"] == "genai-dev-models-"


def test_production_bucket_is_not_force_destroyed(dev):
    assert dev.one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is True
    assert store("prod").one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is False


# --- layout and manifest ------------------------------------------------------------------------------
def test_artifact_key_layout():
    assert artifact_key("lora", "sdxl/pixel", "v1", "a/b.safetensors") == "models/lora/sdxl/pixel/v1/a/b.safetensors"


@pytest.mark.parametrize("bad", ["", "UPPER", "a/b/c", "-x", "a b", "../x"])
def test_bad_model_ids_are_refused(bad):
    with pytest.raises(LayoutError, match="model id"):
        validate_model_id(bad)


@pytest.mark.parametrize(("kind", "version", "path"), [
    ("weights", "v1", "a"), ("lora", "-v", "a"), ("lora", "v1", "../a"), ("lora", "v1", "/a"),
    ("lora", "v1", ".hidden"), ("lora", "v1", "a//b")])
def test_bad_kinds_versions_and_paths_are_refused(kind, version, path):
    with pytest.raises(LayoutError):
        artifact_key(kind, "m", version, path)


def _entry(model_id="sdxl/turbo"):
    return ModelEntry(model_id=model_id, kind="checkpoint", version="v1", uploaded_at="2026-01-01T00:00:00Z",
                      files=(ModelFile(path="m.safetensors", key=artifact_key("checkpoint", model_id, "v1",
                                                                                "m.safetensors"),
                                       size=10, sha256=SHA),))


def test_manifest_round_trip_and_lookup():
    manifest = Manifest().with_entry(_entry()).with_entry(_entry("sd15/dream"))
    again = Manifest.from_json(manifest.to_json())
    assert again.models == manifest.models
    assert again.get("sdxl/turbo").total_size == 10
    doc = json.loads(manifest.to_json())
    assert doc["schema"] == 1 and list(doc["models"]) == ["sd15/dream", "sdxl/turbo"]
    with pytest.raises(ModelNotFoundError, match="not in the manifest"):
        again.get("nope")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(schema=2), "schema"),
    (lambda d: d["models"]["sdxl/turbo"]["files"][0].update(sha256="xyz"), "sha256"),
    (lambda d: d["models"]["sdxl/turbo"]["files"][0].update(size=-1), "size"),
    (lambda d: d["models"]["sdxl/turbo"]["files"][0].update(key="elsewhere"), "layout"),
    (lambda d: d["models"]["sdxl/turbo"].update(kind="weights"), "kind"),
])
def test_malformed_manifests_name_the_problem(mutate, message):
    doc = json.loads(Manifest().with_entry(_entry()).to_json())
    mutate(doc)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(json.dumps(doc))
