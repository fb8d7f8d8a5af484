"""JobStore against moto's DynamoDB: transitions, final-once, cancel, idempotency, quota."""

from __future__ import annotations

import pytest

from runtime.jobs.errors import IdempotencyConflictError, JobNotFoundError
from runtime.jobs.store import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobStore, new_record

SPEC = {"model": "m", "task": "txt2img", "inputs": {"prompt": "x", "guidance": 7.5}, "webhook": None,
        "webhook_events_filter": ["completed"]}


@pytest.fixture
def store(aws_clients, job_table):
    return JobStore(job_table, aws_clients("dynamodb"))


def test_create_get_and_run_to_success(store):
    record, created = store.create(new_record(SPEC, owner="k1"))
    assert created
    got = store.get(record["job_id"])
    assert got["status"] == QUEUED and got["spec"] == SPEC and got["started_at"] is None
    attempt = store.start_attempt(record["job_id"], "w-1", 3, 30)
    running = attempt.record
    assert attempt.started and attempt.number == 1 and attempt.lease == 1
    assert running["status"] == RUNNING and running["attempts"] == 1 and running["started_at"]
    outputs = [{"url": "https://cdn.example.com/o/1.png", "content_type": "image/png"}]
    timings = {"queue_wait_ms": 12, "inference_ms": 1500.5, "total_ms": 1600}
    assert store.mark_succeeded(record["job_id"], outputs, timings) is True
    assert store.mark_succeeded(record["job_id"], outputs, timings) is False  # redelivery: recorded once
    assert store.mark_failed(record["job_id"], "late failure") is False
    final = store.get(record["job_id"])
    assert final["status"] == SUCCEEDED and final["outputs"] == outputs and final["timings"] == timings
    assert store.start_attempt(record["job_id"], "w-2", 3, 30).outcome == "final"


def test_failure_and_attempt_errors(store):
    record, _ = store.create(new_record(SPEC, owner="k1"))
    store.start_attempt(record["job_id"], "w-1", 3, 30)
    store.record_attempt_error(record["job_id"], 1, RuntimeError("CUDA out of memory"))
    store.start_attempt(record["job_id"], "w-2", 3, 30)  # redelivered after a crash: running again
    assert store.mark_failed(record["job_id"], {"code": "backend", "message": "boom"}) is True
    final = store.get(record["job_id"])
    assert final["status"] == FAILED and final["error"] == {"code": "backend", "message": "boom"}
    assert final["attempts"] == 2 and final["attempt_errors"][0]["code"] == "RuntimeError"


def test_cancel_queued_and_running(store):
    queued, _ = store.create(new_record(SPEC, owner="k1"))
    assert store.request_cancel(queued["job_id"])["status"] == CANCELED
    assert store.start_attempt(queued["job_id"], "w", 3, 30).outcome == "final"
    running, _ = store.create(new_record(SPEC, owner="k1"))
    store.start_attempt(running["job_id"], "w", 3, 30)
    flagged = store.request_cancel(running["job_id"])
    assert flagged["status"] == RUNNING and flagged["cancel_requested"] is True
    assert store.is_cancel_requested(running["job_id"])
    assert store.mark_canceled(running["job_id"]) is True
    assert store.get(running["job_id"])["status"] == CANCELED
    assert store.request_cancel("j_00000000000000000000000000") is None


def test_redelivery_with_cancel_requested_is_canceled(store):
    record, _ = store.create(new_record(SPEC, owner="k1"))
    store.start_attempt(record["job_id"], "w", 3, 30)
    store.request_cancel(record["job_id"])
    assert store.start_attempt(record["job_id"], "w2", 3, 30).outcome == "canceled"
    assert store.get(record["job_id"])["status"] == CANCELED


def test_start_attempt_unknown_job_raises(store):
    with pytest.raises(JobNotFoundError):
        store.start_attempt("j_00000000000000000000000000", "w", 3, 30)
    assert store.mark_succeeded("j_00000000000000000000000000", [], {}) is False


def test_idempotency(store):
    first, created = store.create(new_record(SPEC, owner="k1"), idempotency_key="abc", fingerprint="f1")
    again, created_again = store.create(new_record(SPEC, owner="k1"), idempotency_key="abc", fingerprint="f1")
    assert created and not created_again and again["job_id"] == first["job_id"]
    with pytest.raises(IdempotencyConflictError):
        store.create(new_record(SPEC, owner="k1"), idempotency_key="abc", fingerprint="f2")
    other_owner, created_other = store.create(new_record(SPEC, owner="k2"), idempotency_key="abc", fingerprint="f1")
    assert created_other and other_owner["job_id"] != first["job_id"]
    store.abandon(first, idempotency_key="abc")
    fresh, created_fresh = store.create(new_record(SPEC, owner="k1"), idempotency_key="abc", fingerprint="f2")
    assert created_fresh and fresh["job_id"] != first["job_id"]


def test_a_retried_write_whose_first_attempt_succeeded_is_still_ours(store):
    """botocore retries a put or transaction after a read timeout even when the first attempt went through."""
    record = new_record(SPEC, owner="k1")
    assert store.create(record) == (record, True)
    again, created = store.create(record)  # same job id: the retry of our own write
    assert created and again["job_id"] == record["job_id"]
    keyed = new_record(SPEC, owner="k1")
    assert store.create(keyed, idempotency_key="k", fingerprint="f")[1]
    replayed, created = store.create(keyed, idempotency_key="k", fingerprint="f")
    assert created and replayed["job_id"] == keyed["job_id"]  # not mistaken for another request's replay
    other, created = store.create(new_record(SPEC, owner="k1"), idempotency_key="k", fingerprint="f")
    assert not created and other["job_id"] == keyed["job_id"]  # a genuine replay


def test_enqueued_flag(store):
    record, _ = store.create(new_record(SPEC, owner="k1"))
    assert store.get(record["job_id"])["enqueued"] is False
    store.mark_enqueued(record["job_id"])
    assert store.get(record["job_id"])["enqueued"] is True


def test_daily_quota(store):
    assert [store.consume_daily_quota("k1", 2, now=1_700_000_000) for _ in range(3)] == [True, True, False]
    assert store.consume_daily_quota("k1", 2, now=1_700_000_000 + 86400)
