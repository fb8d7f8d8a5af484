"""The model upload CLI against a local S3 (moto server): multipart, parallel parts, manifest entry."""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import threading

import boto3
import pytest
from moto.server import ThreadedMotoServer

from runtime.model_store import Manifest, ManifestStore, ModelEntry, ModelFile, artifact_key
from runtime.model_store.upload import MiB, plan, upload
from tools import model_upload

pytestmark = pytest.mark.integration

BUCKET = "genai-test-models"
FILE_MIB = 300
PART_MIB = 16
CONCURRENCY = 8


@pytest.fixture(scope="module")
def endpoint():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """300 MiB of incompressible data: one random MiB block, each copy stamped with its index."""
    path = tmp_path_factory.mktemp("model") / "big-model.safetensors"
    block = bytearray(os.urandom(MiB))
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for i in range(FILE_MIB):
            block[:8] = i.to_bytes(8, "little")
            fh.write(block)
            digest.update(block)
    return path, digest.hexdigest()


class PartWatch:
    """Counts S3 calls by operation and the most UploadPart calls in flight at once."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def attach(self, client):
        client.meta.events.register("before-call.s3.*", self._before)
        client.meta.events.register("after-call.s3.*", self._after)
        return client

    def _before(self, model, **_):
        with self._lock:
            self.calls[model.name] = self.calls.get(model.name, 0) + 1
            if model.name == "UploadPart":
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _after(self, model, **_):
        if model.name == "UploadPart":
            with self._lock:
                self.in_flight -= 1


@pytest.fixture
def watch(monkeypatch):
    watcher = PartWatch()
    original = model_upload.make_s3_client
    monkeypatch.setattr(model_upload, "make_s3_client", lambda *a: watcher.attach(original(*a)))
    return watcher


def run_cli(endpoint, path, model_id="sdxl/test-model", extra=()):
    return model_upload.main([str(path), "--bucket", BUCKET, "--model-id", model_id, "--kind", "checkpoint",
                              "--endpoint-url", endpoint, "--region", "us-east-1", "--part-size-mib", str(PART_MIB),
                              "--concurrency", str(CONCURRENCY), *extra])


def test_cli_uploads_in_parallel_parts_and_registers_the_model(endpoint, big_file, watch, capsys):
    path, sha = big_file
    assert run_cli(endpoint, path) == 0
    out, err = capsys.readouterr()

    assert watch.calls.get("CreateMultipartUpload") == 1
    assert watch.calls.get("UploadPart") == math.ceil(FILE_MIB / PART_MIB)
    assert watch.calls.get("CompleteMultipartUpload") == 1
    assert watch.max_in_flight >= 3, f"parts were not sent in parallel (max in flight {watch.max_in_flight})"
    assert "%" in err and "registered sdxl/test-model" in err

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    manifest = Manifest.from_json(s3.get_object(Bucket=BUCKET, Key="manifest.json")["Body"].read())
    entry = manifest.get("sdxl/test-model")
    key = artifact_key("checkpoint", "sdxl/test-model", sha[:16], path.name)
    assert entry.version == sha[:16]
    assert [(f.path, f.key, f.size, f.sha256) for f in entry.files] == [(path.name, key, FILE_MIB * MiB, sha)]
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == FILE_MIB * MiB
    assert head["Metadata"]["sha256"] == sha
    assert json.loads(out)["files"][0]["key"] == key


def test_cli_skips_an_identical_upload(endpoint, big_file, watch, capsys):
    path, _ = big_file
    assert run_cli(endpoint, path) == 0  # first run of the module already stored it, or stores it now
    watch.calls.clear()
    assert run_cli(endpoint, path) == 0
    assert "UploadPart" not in watch.calls
    assert "skipped" in capsys.readouterr().err


def test_registering_keeps_other_models_and_survives_a_race(endpoint, tmp_path):
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    (tmp_path / "lora.safetensors").write_bytes(b"lora" * 1000)
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "workflow.json").write_text('{"3": {}}')
    lora = upload(s3, BUCKET, plan("sdxl/pixel-lora", "lora", [tmp_path / "lora.safetensors"]))

    class RacingClient:
        """Lets another writer register a model between our read and our conditional write, once."""

        def __init__(self, inner):
            self.inner, self.raced = inner, False

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def put_object(self, **kwargs):
            if not self.raced:
                self.raced = True
                ManifestStore(self.inner, BUCKET).register(ModelEntry(
                    model_id="sd15/racer", kind=lora.kind, version=lora.version,
                    files=tuple(ModelFile(path=f.path, size=f.size, sha256=f.sha256,
                                          key=artifact_key(lora.kind, "sd15/racer", lora.version, f.path))
                                for f in lora.files),
                    uploaded_at=lora.uploaded_at))
            return self.inner.put_object(**kwargs)

    wf = upload(RacingClient(s3), BUCKET, plan("comfy/txt2img", "workflow", [tmp_path / "wf"]))
    manifest = ManifestStore(s3, BUCKET).load()
    assert {"sdxl/pixel-lora", "sd15/racer", "comfy/txt2img"} <= set(manifest.models)
    assert manifest.get("comfy/txt2img").files[0].path == "workflow.json"
    assert wf.files[0].key.startswith("models/workflow/comfy/txt2img/")


def test_cli_rejects_a_bad_model_id(endpoint, big_file, capsys):
    path, _ = big_file
    assert run_cli(endpoint, path, model_id="Bad Id") == 2
    assert "model id" in capsys.readouterr().err
