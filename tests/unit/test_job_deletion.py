"""Issue 44, point 7: ``DELETE /v1/jobs/{id}`` through the real app, store and S3 deleter on moto (DynamoDB and S3),
and the outputs' cache policy. A final job loses its objects (every version), prompt, inputs, labels and errors and
keeps a tombstone; a job not final is 409, another key's 404, a second DELETE the same answer."""

from __future__ import annotations

import json
import uuid

import pytest

from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import Principal
from runtime.backends.base import OutputFile
from runtime.jobs.cost import attempt_entry
from runtime.jobs.deletion import JobDeleter, S3JobObjects
from runtime.jobs.output_links import DEFAULT_TTL_SECONDS
from runtime.jobs.store import JobStore
from runtime.queues.memory import InMemoryQueue
from runtime.worker.aws import ObjectStore
from runtime.worker.outputs import CACHE_CONTROL, OUTPUT_MAX_AGE_SECONDS, OutputUploader

PROMPT = "a portrait of my neighbour, Jane Doe"
INLINE = "data:image/png;base64," + "iVBORw0KGgo" * 4


@pytest.fixture
def s3(aws_clients):
    client = aws_clients("s3")
    bucket = f"outputs-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


@pytest.fixture
def store(aws_clients, job_table):
    return JobStore(job_table, aws_clients("dynamodb"))


def _app(store, s3):
    client, bucket = s3
    return ApiApp(store, InMemoryQueue(), ApiOptions(auth_mode="none", read_rate_per_second=None),
                  deleter=JobDeleter(store, S3JobObjects(client, bucket)))


def _call(app, method, path, owner="alice", body=None):
    resp = app.handle(Request(method, path, body=json.dumps(body).encode() if body is not None else b"",
                              principal=Principal(id=owner, kind="api-key")))
    return resp.status, resp.body


def _finished_job(app, store, s3, task_inputs=None):
    """A job created through the API, run by a worker (outputs uploaded as the worker does), succeeded."""
    client, bucket = s3
    status, job = _call(app, "POST", "/v1/jobs", body={
        "model": "m", "task": "img2img", "inputs": {"prompt": PROMPT, "image": INLINE, **(task_inputs or {})},
        "webhook": "https://hooks.example.com/u/jane", "metadata": {"user": "jane"}})
    assert status in (201, 202), job
    attempt = store.attempts.start_attempt(job["id"], "w-1", 3, 30)
    uploader = OutputUploader(ObjectStore(client, bucket))
    uploaded = uploader.upload(job["id"], [OutputFile("image-0.webp", b"RIFF0000WEBP", "image/webp")],
                               attempt=attempt.lease)
    uploader.upload(job["id"], [OutputFile("image-0.webp", b"lost attempt", "image/webp")], attempt=99)  # a leftover
    cost = attempt_entry(attempt=1, lease=attempt.lease, outcome="succeeded", gpu_seconds=12.5,
                         phases={"inference": 10.0}, instance_type="g5.xlarge", purchase_option="spot",
                         hourly_usd=0.5, price_source="test")
    assert store.mark_succeeded(job["id"], [{"key": o["key"], "content_type": o["content_type"], "seed": 7}
                                            for o in uploaded], {"total_ms": 12.0}, lease=attempt.lease, cost=cost)
    return job["id"], uploaded[0]["key"]


def _keys(s3, prefix="outputs/"):
    client, bucket = s3
    resp = client.list_object_versions(Bucket=bucket, Prefix=prefix)
    return [v["Key"] for v in resp.get("Versions", [])] + [m["Key"] for m in resp.get("DeleteMarkers", [])]


def test_deleting_a_final_job_removes_its_objects_and_prompt_and_keeps_a_tombstone(store, s3):
    app = _app(store, s3)
    job_id, key = _finished_job(app, store, s3)
    other_id, other_key = _finished_job(app, store, s3)
    before = store.get(job_id)
    view_before = _call(app, "GET", f"/v1/jobs/{job_id}")[1]
    assert len(_keys(s3, f"outputs/{job_id}/")) == 2 and PROMPT in json.dumps(before)
    assert view_before["cost"]["gpu_seconds"] == 12.5 and view_before["metadata"] == {"user": "jane"}
    status, tombstone = _call(app, "DELETE", f"/v1/jobs/{job_id}")
    assert status == 200
    assert _keys(s3, f"outputs/{job_id}/") == []  # the record's output and the lost attempt's leftover
    assert other_key in _keys(s3)  # another job's objects stay
    record = store.get(job_id)
    text = json.dumps(record, default=str)
    for secret in (PROMPT, INLINE[:40], "hooks.example.com", "jane", key):
        assert secret not in text, secret
    # the tombstone: id, status, times and cost for billing
    assert record["status"] == "succeeded" and record["owner"] == "alice" and record["deleted_at"]
    assert record["created_at"] == before["created_at"] and record["completed_at"] == before["completed_at"]
    assert record["attempt_costs"] == before["attempt_costs"] and record["attempts"] == before["attempts"]
    assert tombstone["id"] == job_id and tombstone["status"] == "succeeded" and tombstone["deleted_at"]
    assert tombstone["outputs"] == [] and tombstone["inputs"] == {} and tombstone["metadata"] == {}
    assert tombstone["webhook"] is None
    for kept in ("cost", "created_at", "started_at", "completed_at", "timings", "model", "task", "attempts"):
        assert tombstone[kept] == view_before[kept], kept
    # deleting twice: the same answer; GET shows the tombstone
    assert _call(app, "DELETE", f"/v1/jobs/{job_id}") == (200, tombstone)
    assert _call(app, "GET", f"/v1/jobs/{job_id}") == (200, tombstone)
    # a deleted job no longer matches its labels
    assert [j["id"] for j in app.handle(Request("GET", "/v1/jobs", query={"metadata.user": "jane"},
                                                principal=Principal(id="alice", kind="api-key"))).body["jobs"]] \
        == [other_id]


def test_a_job_not_final_is_409_and_another_keys_job_404_and_nothing_is_removed(store, s3):
    app = _app(store, s3)
    status, queued = _call(app, "POST", "/v1/jobs", body={"model": "m", "inputs": {"prompt": PROMPT}})
    status, problem = _call(app, "DELETE", f"/v1/jobs/{queued['id']}")
    assert status == 409 and problem["type"].endswith("job-not-final") and "cancel" in problem["detail"]
    store.attempts.start_attempt(queued["id"], "w-1", 3, 30)
    assert _call(app, "DELETE", f"/v1/jobs/{queued['id']}")[0] == 409  # running
    assert store.get(queued["id"])["spec"]["inputs"]["prompt"] == PROMPT
    job_id, key = _finished_job(app, store, s3)
    status, problem = _call(app, "DELETE", f"/v1/jobs/{job_id}", owner="mallory")
    assert status == 404 and key in _keys(s3) and store.get(job_id)["spec"]["inputs"]["prompt"] == PROMPT
    assert _call(app, "DELETE", "/v1/jobs/j_nonsense")[0] == 404


def test_a_canceled_queued_job_is_deleted(store, s3):
    app = _app(store, s3)
    _, job = _call(app, "POST", "/v1/jobs", body={"model": "m", "inputs": {"prompt": PROMPT}})
    assert _call(app, "POST", f"/v1/jobs/{job['id']}/cancel")[1]["status"] == "canceled"
    status, tombstone = _call(app, "DELETE", f"/v1/jobs/{job['id']}")
    assert status == 200 and tombstone["status"] == "canceled" and PROMPT not in json.dumps(store.get(job["id"]))


def test_every_version_of_a_versioned_object_goes(store, s3):
    client, bucket = s3
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    app = _app(store, s3)
    job_id, key = _finished_job(app, store, s3)
    client.put_object(Bucket=bucket, Key=key, Body=b"second version")
    client.delete_object(Bucket=bucket, Key=f"outputs/{job_id}/99/image-0.webp")  # a delete marker over a version
    assert len(_keys(s3, f"outputs/{job_id}/")) == 4
    assert _call(app, "DELETE", f"/v1/jobs/{job_id}")[0] == 200
    assert _keys(s3, f"outputs/{job_id}/") == []


def test_when_the_objects_cannot_be_deleted_the_record_keeps_everything_and_a_retry_finishes(store, s3):
    client, bucket = s3
    app = _app(store, s3)
    job_id, key = _finished_job(app, store, s3)
    app.deleter.objects = S3JobObjects(client, "no-such-bucket-44f")
    status, _ = _call(app, "DELETE", f"/v1/jobs/{job_id}")
    assert status == 503 and store.get(job_id)["spec"]["inputs"]["prompt"] == PROMPT and key in _keys(s3)
    app.deleter.objects = S3JobObjects(client, bucket)
    assert _call(app, "DELETE", f"/v1/jobs/{job_id}")[0] == 200 and _keys(s3, f"outputs/{job_id}/") == []


def test_a_deployment_without_an_outputs_bucket_offers_no_delete(store):
    app = ApiApp(store, InMemoryQueue(), ApiOptions(auth_mode="none", read_rate_per_second=None))
    _, job = _call(app, "POST", "/v1/jobs", body={"model": "m", "inputs": {"prompt": "x"}})
    assert _call(app, "DELETE", f"/v1/jobs/{job['id']}")[0] == 404


def test_outputs_are_cached_privately_within_an_output_links_lifetime(s3):
    client, bucket = s3
    OutputUploader(ObjectStore(client, bucket)).upload("j_x", [OutputFile("a.png", b"x", "image/png")], attempt=1)
    stored = client.head_object(Bucket=bucket, Key="outputs/j_x/1/a.png")["CacheControl"]
    assert stored == CACHE_CONTROL == f"private, max-age={OUTPUT_MAX_AGE_SECONDS}"
    assert "immutable" not in stored and "public" not in stored and OUTPUT_MAX_AGE_SECONDS <= DEFAULT_TTL_SECONDS
