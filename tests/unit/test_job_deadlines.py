"""Issue 44, point 1: a job not started by its deadline ends canceled (reason ``deadline``), not run and not
charged, at the claim (``start_attempt``) and, while still queued, by the sweeper through the sparse
``queued-by-deadline`` index, which holds only never-started queued jobs. JobStore on moto's DynamoDB."""

from __future__ import annotations

import pytest

from runtime.functions.reconciler import cancel_expired_deadlines, sweep
from runtime.jobs.attempts import DEADLINE_PASSED
from runtime.jobs.deadlines import DEADLINE_INDEX_KEY, deadline_fields
from runtime.jobs.store import CANCELED, QUEUED, RUNNING, JobStore, new_record
from runtime.jobs.views import public_view

SPEC = {"model": "m", "task": "txt2img", "inputs": {"prompt": "x"}, "webhook": None,
        "webhook_events_filter": ["completed"]}
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(aws_clients, job_table, clock):
    return JobStore(job_table, aws_clients("dynamodb"), clock=clock)


def _job(store: JobStore, deadline_s: float | None, now: float = T0) -> str:
    record = new_record(SPEC, owner="k1", now=now)
    record.update(deadline_fields(now, deadline_s))
    return store.create(record)[0]["job_id"]


def test_a_claim_after_the_deadline_cancels_the_job_without_running_or_charging_it(store, clock):
    job_id = _job(store, 10)
    clock.now = T0 + 10.5
    attempt = store.attempts.start_attempt(job_id, "w-1", 3, 30)
    assert attempt.outcome == DEADLINE_PASSED and not attempt.started
    record = store.get(job_id)
    assert record["status"] == CANCELED and record["cancel_reason"] == "deadline"
    assert record["attempts"] == 0 and not record.get("attempt_costs") and record["error"]["code"] == "deadline"
    assert DEADLINE_INDEX_KEY not in record  # out of the sparse index
    view = public_view(record, "", None)
    assert view["cancel_reason"] == "deadline" and view["cost"]["usd"] == 0 and view["deadline_at"]


def test_a_job_started_in_time_keeps_no_deadline_when_handed_back(store, clock):
    job_id = _job(store, 10)
    clock.now = T0 + 5
    attempt = store.attempts.start_attempt(job_id, "w-1", 3, 30)
    assert attempt.started and DEADLINE_INDEX_KEY not in attempt.record
    assert store.attempts.release_attempt(job_id, attempt.lease)  # a drain hands it back
    clock.now = T0 + 60
    assert store.attempts.start_attempt(job_id, "w-2", 3, 30).started  # it started in time once: it runs
    assert cancel_expired_deadlines(store) == 0


def test_no_deadline_means_no_index_and_no_cancel(store, clock):
    job_id = _job(store, None)
    assert DEADLINE_INDEX_KEY not in store.get(job_id)
    clock.now = T0 + 86_400
    assert store.attempts.start_attempt(job_id, "w-1", 3, 30).started


def test_the_sweeper_cancels_only_queued_jobs_past_their_deadline(store, clock):
    expired, later, running, client_canceled = (_job(store, 10), _job(store, 100), _job(store, 10),
                                                _job(store, 10))
    assert store.attempts.start_attempt(running, "w-1", 3, 30).started
    store.cancel(client_canceled)
    clock.now = T0 + 20
    report = sweep(store, max_attempts=3, stale_after_s=300)
    assert report.deadline_canceled == 1
    assert store.get(expired)["status"] == CANCELED and store.get(expired)["cancel_reason"] == "deadline"
    assert store.get(later)["status"] == QUEUED and store.get(running)["status"] == RUNNING
    assert store.get(client_canceled)["cancel_reason"] == "client"
    assert store.deadline_passed_ids(T0 + 1000, 10) == [later]  # the index keeps only the one still queued
    clock.now = T0 + 200
    assert cancel_expired_deadlines(store) == 1 and store.deadline_passed_ids(T0 + 1000, 10) == []
    assert cancel_expired_deadlines(store) == 0  # a second run finds nothing (each cancel happens once)


def test_the_sweeper_loses_to_a_worker_that_started_the_job_meanwhile(store, clock):
    job_id = _job(store, 10)
    clock.now = T0 + 9
    assert store.attempts.start_attempt(job_id, "w-1", 3, 30).started
    clock.now = T0 + 20
    assert store.attempts.cancel_expired(job_id) is False  # fenced on queued + index: the run goes on
    assert store.get(job_id)["status"] == RUNNING


def test_every_final_write_takes_the_job_out_of_the_index(store, clock):
    """A queued job made final without a start (the API could not enqueue it) leaves the sparse index too."""
    job_id = _job(store, 10)
    assert store.mark_failed(job_id, {"code": "enqueue-failed", "message": "queue down"})
    assert DEADLINE_INDEX_KEY not in store.get(job_id)
    assert store.deadline_passed_ids(T0 + 1000, 10) == []
