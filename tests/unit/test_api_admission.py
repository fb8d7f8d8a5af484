"""Issue 44, points 1 and 2 at the API: ``deadline_seconds`` (its bounds, the stack's sync and async defaults) and
admission control: a job expected to wait longer than its deadline or the stack's bound is answered 429 with
``Retry-After`` and the estimate before anything is written (no record, no quota unit). The expected wait is the
quote's (runtime.api.quotes). ApiApp on moto's DynamoDB with an in-memory queue."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import StaticKeyStore, generate_key
from runtime.jobs.store import JobStore
from runtime.queues.memory import InMemoryQueue
from runtime.queues.sqs_producer import SqsJobProducer

KEY, RECORD = generate_key("admission")
JOB = {"model": "sd15", "task": "txt2img", "inputs": {"prompt": "a cat", "width": 64, "height": 64}}
T0 = 1_800_000_000.0


def _app(store: JobStore, queue=None, **options) -> ApiApp:
    options = ApiOptions(auth_mode="api-key", average_job_seconds=2.0, quota_per_day=100, **options)
    return ApiApp(store, queue if queue is not None else InMemoryQueue(), options,
                  keys=StaticKeyStore({RECORD.key_id: RECORD}), clock=lambda: T0, sleep=lambda _s: None)


@pytest.fixture
def store(aws_clients, job_table):
    return JobStore(job_table, aws_clients("dynamodb"), clock=lambda: T0)


def _post(app: ApiApp, body: dict, wait: int | None = None):
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    if wait is not None:
        headers["prefer"] = f"wait={wait}"
    return app.handle(Request("POST", "/v1/jobs", body=json.dumps(body).encode(), headers=headers))


def _jobs(app: ApiApp) -> list:
    resp = app.handle(Request("GET", "/v1/jobs", headers={"authorization": f"Bearer {KEY}"}))
    return resp.body.get("jobs", resp.body.get("data"))


@pytest.mark.parametrize("value", [0, 86_401, -5, 1.5, "30", True])
def test_a_deadline_out_of_bounds_is_refused_naming_the_field_and_bound(store, value):
    resp = _post(_app(store), {**JOB, "deadline_seconds": value})
    assert resp.status == 422, resp.body
    assert [e["field"] for e in resp.body["errors"]] == ["deadline_seconds"], resp.body


def test_the_deadline_is_the_jobs_own_else_the_stacks_sync_or_async_default(store):
    app = _app(store, default_deadline_sync_seconds=20, default_deadline_async_seconds=600)
    own = _post(app, {**JOB, "deadline_seconds": 45}).body
    assert own["deadline_at"] == "2027-01-15T08:00:45.000Z"
    sync = _post(app, JOB, wait=1).body
    assert sync["deadline_at"] == "2027-01-15T08:00:20.000Z"
    async_ = _post(app, JOB).body
    assert async_["deadline_at"] == "2027-01-15T08:10:00.000Z"
    assert _post(_app(store), JOB).body["deadline_at"] is None  # no default: no deadline


def test_a_job_expected_to_miss_its_deadline_is_refused_429_before_anything_is_written(store):
    queue = InMemoryQueue()
    app = _app(store, queue)
    for _ in range(5):  # five jobs ahead, none running: about 5 x 2 s before the next starts
        assert _post(app, JOB).status == 202
    with mock.patch.object(store, "consume_daily_quota", wraps=store.consume_daily_quota) as quota:
        resp = _post(app, {**JOB, "deadline_seconds": 4})
    assert resp.status == 429 and resp.body["type"].endswith("overloaded"), resp.body
    assert resp.body["estimate"] == {"wait_seconds": 10.0, "bound_seconds": 4.0, "bound": "deadline_seconds"}
    assert resp.headers["Retry-After"] == "6"  # the excess over the bound
    assert quota.call_count == 0 and len(_jobs(app)) == 5  # nothing written
    assert queue.approximate_depth().waiting == 5  # nor sent
    assert _post(app, {**JOB, "deadline_seconds": 10}).status == 202  # within its deadline: admitted


def test_the_stack_bound_refuses_jobs_without_a_deadline_and_a_tighter_deadline_wins(store):
    app = _app(store, admission_max_wait_seconds=5)
    for _ in range(3):
        assert _post(app, JOB).status == 202  # 0, 2, 4 s expected: within 5 s
    refused = _post(app, JOB)  # 6 s expected
    assert refused.status == 429 and refused.body["estimate"]["bound"] == "admissionMaxWaitSeconds"
    assert refused.headers["Retry-After"] == "1"
    tighter = _post(app, {**JOB, "deadline_seconds": 3})
    assert tighter.status == 429 and tighter.body["estimate"]["bound"] == "deadline_seconds"


def test_no_deadline_and_no_bound_costs_no_estimate(store):
    with mock.patch.object(store, "count_running", side_effect=AssertionError("estimated")):
        assert _post(_app(store), JOB).status == 202


def test_a_burst_sees_itself_through_the_depth_cache(aws_clients):
    """The SQS producer caches the depth for 5 s; what it sent since counts, so a burst is shed within it."""
    sqs = aws_clients("sqs")
    url = sqs.create_queue(QueueName="admission-burst")["QueueUrl"]
    producer = SqsJobProducer(url, sqs, depth_cache_seconds=3600)
    assert producer.approximate_depth().waiting == 0
    from runtime.queues.base import QueueMessage
    for i in range(3):
        producer.send(QueueMessage(job_id=f"j{i}", job={"model": "m", "task": "txt2img"}, enqueued_at=T0))
    assert producer.approximate_depth().waiting == 3
