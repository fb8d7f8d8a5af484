"""Issue 44, point 7 (rest): ``store_inputs: false`` keeps the prompt and input images out of the job record, and
``retention_seconds`` shortens how long the record and its outputs are kept; on moto through the real app, store and
output sweeper, and the sweeper's stream filter under mocks."""

from __future__ import annotations

import json
import uuid

import pytest

from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import Principal
from runtime.functions.output_orphans import OrphanSweeper
from runtime.jobs.errors import ValidationError
from runtime.jobs.retention import JOB_TTL_SECONDS
from runtime.jobs.schema import JobSpec, fingerprint, validate_job
from runtime.jobs.store import JobStore, serialize
from runtime.queues.memory import InMemoryQueue

PROMPT = "my daughter's birthday party at 12 Elm Street"
INLINE = "data:image/png;base64," + "iVBORw0KGgo" * 4
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _problem(body):
    with pytest.raises(ValidationError) as info:
        validate_job({"model": "m", "inputs": {"prompt": "x"}, **body})
    [problem] = info.value.problems
    return problem.field, problem.rule, problem.message


@pytest.mark.parametrize("body, field, rule, says", [
    ({"retention_seconds": 3599}, "retention_seconds", "range", "3600"),
    ({"retention_seconds": 30 * 86400 + 1}, "retention_seconds", "range", "2592000"),
    ({"retention_seconds": "1h"}, "retention_seconds", "type", "integer"),
    ({"store_inputs": "false"}, "store_inputs", "type", "boolean"),
])
def test_bad_retention_and_store_inputs_are_a_422_naming_the_field_and_the_bound(body, field, rule, says):
    got_field, got_rule, message = _problem(body)
    assert got_field == field and got_rule == rule and says in message


def test_a_job_asking_for_neither_reads_and_fingerprints_as_before():
    plain = validate_job({"model": "m", "inputs": {"prompt": "x"}})
    assert "retention_seconds" not in plain and "store_inputs" not in plain
    assert fingerprint(validate_job({"model": "m", "inputs": {"prompt": "x"}, "store_inputs": True})) \
        == fingerprint(plain)


@pytest.fixture
def store(aws_clients, job_table):
    return JobStore(job_table, aws_clients("dynamodb"))


def _app(store, clock, queue=None):
    queue = queue if queue is not None else InMemoryQueue()  # an empty queue is falsy (it has a length)
    return ApiApp(store, queue, ApiOptions(auth_mode="none", read_rate_per_second=None), clock=clock)


def _call(app, method, path, body=None):
    resp = app.handle(Request(method, path, body=json.dumps(body).encode() if body is not None else b"",
                              principal=Principal(id="alice", kind="api-key")))
    return resp.status, resp.body


def test_store_inputs_false_never_writes_the_prompt_or_images_to_the_table(store, aws_clients, job_table):
    queue = InMemoryQueue()
    app = _app(store, Clock(), queue)
    status, job = _call(app, "POST", "/v1/jobs", {"model": "m", "task": "img2img", "store_inputs": False, "inputs": {
        "prompt": PROMPT, "negative_prompt": "blurry faces", "image": INLINE, "steps": 12, "seed": 5}})
    assert status == 202, job
    item = aws_clients("dynamodb").get_item(TableName=job_table, Key={"pk": {"S": f"job#{job['id']}"}})["Item"]
    raw = json.dumps(item)
    assert PROMPT not in raw and "blurry faces" not in raw and INLINE[:40] not in raw
    assert job["inputs"]["steps"] == 12 and job["inputs"]["seed"] == 5 and "prompt" not in job["inputs"]
    assert job["store_inputs"] is False
    # the worker reads the queue message, which carries the whole spec
    [message] = queue.sent
    spec = JobSpec.parse(message.job, allow_loopback=True)
    assert spec.inputs.prompt == PROMPT and spec.inputs.image == INLINE
    # a job that stores its inputs keeps them, as before
    _, kept = _call(app, "POST", "/v1/jobs", {"model": "m", "inputs": {"prompt": PROMPT}})
    assert store.get(kept["id"])["spec"]["inputs"]["prompt"] == PROMPT and "store_inputs" not in kept


def test_retention_shortens_the_records_life_and_the_api_forgets_it_on_time(store):
    clock = Clock()
    app = _app(store, clock)
    _, short = _call(app, "POST", "/v1/jobs", {"model": "m", "inputs": {"prompt": "x"}, "retention_seconds": 7200})
    _, default = _call(app, "POST", "/v1/jobs", {"model": "m", "inputs": {"prompt": "x"}})
    assert store.get(short["id"])["expires_at"] == int(NOW + 7200) and short["retention_seconds"] == 7200
    assert store.get(default["id"])["expires_at"] == int(NOW + JOB_TTL_SECONDS)
    clock.now = NOW + 7199
    assert _call(app, "GET", f"/v1/jobs/{short['id']}")[0] == 200
    clock.now = NOW + 7200  # DynamoDB's TTL has not removed it yet: the API answers as if it had
    assert _call(app, "GET", f"/v1/jobs/{short['id']}")[0] == 404
    assert _call(app, "GET", f"/v1/jobs/{default['id']}")[0] == 200


def _image(record):
    item = dict(record, pk=f"job#{record['job_id']}", spec=json.dumps(record.get("spec") or {}))
    item.pop("job_id")
    return serialize(item)


TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


def test_a_record_removed_by_the_ttl_takes_every_output_with_it(aws_clients):
    s3, bucket = aws_clients("s3"), f"outputs-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for key in ("outputs/j_1/1/image-0.webp", "outputs/j_1/2/image-0.webp", "outputs/j_2/1/image-0.webp"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    expired = {"job_id": "j_1", "status": "succeeded", "lease": 2,
               "outputs": [{"key": "outputs/j_1/2/image-0.webp"}]}
    kept = {"job_id": "j_2", "status": "succeeded", "lease": 1, "outputs": [{"key": "outputs/j_2/1/image-0.webp"}]}
    sweeper = OrphanSweeper(s3, bucket)
    by_a_caller = {"Records": [{"eventName": "REMOVE", "dynamodb": {"OldImage": _image(kept)},
                                "userIdentity": {"type": "User", "principalId": "someone"}}]}
    assert sweeper.handle(by_a_caller) == 0  # only the TTL's removals
    by_ttl = {"Records": [{"eventName": "REMOVE", "dynamodb": {"OldImage": _image(expired)},
                           "userIdentity": TTL_IDENTITY}]}
    assert sweeper.handle(by_ttl) == 2
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} == {"outputs/j_2/1/image-0.webp"}
