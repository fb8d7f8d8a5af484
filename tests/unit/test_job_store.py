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
    attempt = store.attempts.start_attempt(record["job_id"], "w-1", 3, 30)
    running = attempt.record
    assert attempt.started and attempt.number == 1 and attempt.lease == 1
    assert running["status"] == RUNNING and running["attempts"] == 1 and running["started_at"]
    outputs = [{"key": "outputs/o/1.png", "content_type": "image/png"}]
    timings = {"queue_wait_ms": 12, "inference_ms": 1500.5, "total_ms": 1600}
    assert store.mark_succeeded(record["job_id"], outputs, timings) is True
    assert store.mark_succeeded(record["job_id"], outputs, timings) is False  # redelivery: recorded once
    assert store.mark_failed(record["job_id"], "late failure") is False
    final = store.get(record["job_id"])
    assert final["status"] == SUCCEEDED and final["outputs"] == outputs and final["timings"] == timings
    assert store.attempts.start_attempt(record["job_id"], "w-2", 3, 30).outcome == "final"


def test_failure_and_attempt_errors(store):
    record, _ = store.create(new_record(SPEC, owner="k1"))
    store.attempts.start_attempt(record["job_id"], "w-1", 3, 30)
    store.record_attempt_error(record["job_id"], 1, RuntimeError("CUDA out of memory"))
    store.attempts.start_attempt(record["job_id"], "w-2", 3, 30)  # redelivered after a crash: running again
    assert store.mark_failed(record["job_id"], {"code": "backend", "message": "boom"}) is True
    final = store.get(record["job_id"])
    assert final["status"] == FAILED and final["error"] == {"code": "backend", "message": "boom"}
    assert final["attempts"] == 2 and final["attempt_errors"][0]["code"] == "RuntimeError"


def test_cancel_queued_and_running(store):
    queued, _ = store.create(new_record(SPEC, owner="k1"))
    assert store.request_cancel(queued["job_id"])["status"] == CANCELED
    assert store.attempts.start_attempt(queued["job_id"], "w", 3, 30).outcome == "final"
    running, _ = store.create(new_record(SPEC, owner="k1"))
    store.attempts.start_attempt(running["job_id"], "w", 3, 30)
    flagged = store.request_cancel(running["job_id"])
    assert flagged["status"] == RUNNING and flagged["cancel_requested"] is True
    assert store.is_cancel_requested(running["job_id"])
    assert store.mark_canceled(running["job_id"]) is True
    assert store.get(running["job_id"])["status"] == CANCELED
    assert store.request_cancel("j_00000000000000000000000000") is None


def test_redelivery_with_cancel_requested_is_canceled(store):
    record, _ = store.create(new_record(SPEC, owner="k1"))
    store.attempts.start_attempt(record["job_id"], "w", 3, 30)
    store.request_cancel(record["job_id"])
    assert store.attempts.start_attempt(record["job_id"], "w2", 3, 30).outcome == "canceled"
    assert store.get(record["job_id"])["status"] == CANCELED


def test_start_attempt_unknown_job_raises(store):
    with pytest.raises(JobNotFoundError):
        store.attempts.start_attempt("j_00000000000000000000000000", "w", 3, 30)
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


def test_find_idempotent_reads_the_key_before_anything_is_charged(store):
    assert store.find_idempotent("k1", "order-1", "f1") is None
    first, _ = store.create(new_record(SPEC, owner="k1"), idempotency_key="order-1", fingerprint="f1")
    assert store.find_idempotent("k1", "order-1", "f1")["job_id"] == first["job_id"]
    assert store.find_idempotent("k2", "order-1", "f1") is None  # keys are scoped per owner
    with pytest.raises(IdempotencyConflictError):
        store.find_idempotent("k1", "order-1", "f2")


def test_claim_send_lets_one_caller_send_and_only_after_the_lease(aws_clients, job_table):
    now = [1_000.0]
    store = JobStore(job_table, aws_clients("dynamodb"), clock=lambda: now[0])
    record = {**new_record(SPEC, owner="k1", now=now[0]), "send_lease_until": now[0] + 15}
    store.create(record, idempotency_key="k", fingerprint="f")
    assert store.claim_send(record["job_id"], 15) is False  # the creator's lease is live
    now[0] += 16  # the creator died without marking the job enqueued
    assert [store.claim_send(record["job_id"], 15) for _ in range(3)] == [True, False, False]
    now[0] += 16
    store.mark_enqueued(record["job_id"])
    assert store.claim_send(record["job_id"], 15) is False  # sent: nobody sends it again
    assert store.get(record["job_id"])["enqueued"] is True


def test_cancel_reports_whether_this_call_made_the_change(store):
    queued, _ = store.create(new_record(SPEC, owner="k1"))
    first, changed = store.cancel(queued["job_id"])
    assert changed and first["status"] == CANCELED
    again, changed_again = store.cancel(queued["job_id"])
    assert not changed_again and again["status"] == CANCELED
    running, _ = store.create(new_record(SPEC, owner="k1"))
    store.attempts.start_attempt(running["job_id"], "w", 3, 30)
    assert [store.cancel(running["job_id"])[1] for _ in range(2)] == [True, False]
    assert store.cancel("j_00000000000000000000000000") == (None, False)


def test_concurrent_cancels_change_a_queued_job_once(aws_clients, job_table):
    from concurrent.futures import ThreadPoolExecutor

    from tests.atomic_ddb import AtomicCalls

    setup = JobStore(job_table, aws_clients("dynamodb"))
    queued, _ = setup.create(new_record(SPEC, owner="k1"))
    # One client per "request"; each call atomic as on DynamoDB (moto's server is not, under threads).
    stores = [JobStore(job_table, AtomicCalls(aws_clients("dynamodb"))) for _ in range(10)]
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda s: s.cancel(queued["job_id"]), stores))
    assert sum(changed for _, changed in results) == 1
    assert {record["status"] for record, _ in results} == {CANCELED}
