"""Run markers on the job record (runtime.jobs.attempts) against moto's DynamoDB: a pipelined worker that dies
holds attempts that were not running (claimed ahead, or settling after the run); the next pick-up and the
sweeper give those counts back, and still count the attempt that died running."""

from __future__ import annotations

from runtime.functions.reconciler import sweep
from runtime.jobs.attempts import EXHAUSTED, RUN_FINISHED, RUN_PENDING, STARTED
from runtime.jobs.store import FAILED, QUEUED, RUNNING
from tests.unit.job_store_fixtures import OUT, new_job


def test_a_tracked_claim_is_pending_until_its_run_begins(store):
    job = new_job(store)
    a = store.attempts.start_attempt(job, "w-1", 3, 30, track_run=True)
    assert (a.outcome, a.number, a.lease) == (STARTED, 1, 1)
    assert store.get(job)[RUN_PENDING] == 1
    assert store.attempts.mark_run_began(job, 2) is False  # fenced: not this attempt's lease
    assert store.get(job)[RUN_PENDING] == 1
    assert "run_began_at" not in store.get(job)
    assert store.attempts.mark_run_began(job, a.lease) is True
    record = store.get(job)
    assert RUN_PENDING not in record
    assert float(record["run_began_at"]) >= float(record["last_started_at"])  # when the run began, not the claim


def test_claimed_ahead_never_began_then_the_worker_died_is_not_counted(store):
    job = new_job(store)
    # claimed ahead; the job before it killed the worker
    store.attempts.start_attempt(job, "w-dead", 3, 30, track_run=True)
    retry = store.attempts.start_attempt(job, "w-2", 3, 30, track_run=True)
    assert (retry.outcome, retry.number, retry.lease) == (STARTED, 1, 2)
    record = store.get(job)
    assert record["attempts"] == 1 and record["handbacks"] == 1 and record["worker_id"] == "w-2"
    assert record[RUN_PENDING] == 2  # the new attempt is pending in its turn


def test_an_attempt_that_died_running_is_counted(store):
    job = new_job(store)
    a = store.attempts.start_attempt(job, "w-dead", 3, 30, track_run=True)
    store.attempts.mark_run_began(job, a.lease)  # then the job killed its worker
    retry = store.attempts.start_attempt(job, "w-2", 3, 30, track_run=True)
    assert (retry.number, retry.lease) == (2, 2)
    assert store.get(job).get("handbacks") is None


def test_an_attempt_that_finished_running_is_not_counted_when_its_settle_was_cut_off(store):
    job = new_job(store)
    a = store.attempts.start_attempt(job, "w-dead", 3, 30, track_run=True)
    store.attempts.mark_run_began(job, a.lease)
    # the next job killed the worker while this one settled
    assert store.attempts.mark_run_finished(job, a.lease) is True
    retry = store.attempts.start_attempt(job, "w-2", 3, 30)
    assert (retry.number, retry.lease) == (1, 2)
    assert store.mark_succeeded(job, OUT, lease=retry.lease) is True
    final = store.get(job)
    assert final["attempts"] == 1 and RUN_FINISHED not in final and RUN_PENDING not in final


def test_the_last_attempt_that_finished_running_may_still_be_retried(store):
    job = new_job(store)
    for n in range(2):
        a = store.attempts.start_attempt(job, f"w-{n}", 3, 30)
        store.attempts.fail_attempt(job, a.lease, a.number, {"code": "backend-error", "message": "x"})
    last = store.attempts.start_attempt(job, "w-dead", 3, 30, track_run=True)
    store.attempts.mark_run_began(job, last.lease)
    store.attempts.mark_run_finished(job, last.lease)
    retry = store.attempts.start_attempt(job, "w-3", 3, 30)
    assert (retry.outcome, retry.number) == (STARTED, 3)
    # ...but the one that dies running on the last attempt uses the job up
    store.attempts.mark_run_began(job, retry.lease)
    assert store.attempts.start_attempt(job, "w-4", 3, 30).outcome == EXHAUSTED
    assert store.get(job)["status"] == FAILED


def test_settling_clears_the_markers_so_a_failed_attempt_stays_counted(store):
    job = new_job(store)
    a = store.attempts.start_attempt(job, "w-1", 3, 30, track_run=True)
    store.attempts.mark_run_began(job, a.lease)
    store.attempts.mark_run_finished(job, a.lease)
    assert store.attempts.fail_attempt(job, a.lease, a.number, {"code": "upload", "message": "x"}) is True
    record = store.get(job)
    assert record["status"] == QUEUED and RUN_FINISHED not in record and record["attempts"] == 1
    assert store.attempts.mark_run_finished(job, a.lease) is False  # a late marker finds the attempt settled
    assert store.attempts.start_attempt(job, "w-2", 3, 30).number == 2


def test_released_claim_ahead_is_given_back_once(store):
    job = new_job(store)
    a = store.attempts.start_attempt(job, "w-1", 3, 30, track_run=True)
    assert store.attempts.release_attempt(job, a.lease) is True  # stop before it began: handed back uncounted
    record = store.get(job)
    assert record["attempts"] == 0 and record["handbacks"] == 1 and RUN_PENDING not in record
    assert store.attempts.start_attempt(job, "w-2", 3, 30).number == 1


def test_sweeper_gives_back_pending_and_finished_attempts_and_fails_one_that_died_running(store, clock):
    pending, finished, died = new_job(store), new_job(store), new_job(store)
    for job in (pending, finished, died):
        for n in range(2):
            a = store.attempts.start_attempt(job, f"w-{n}", 3, 30)
            store.attempts.fail_attempt(job, a.lease, a.number, {"code": "backend-error", "message": "x"})
        last = store.attempts.start_attempt(job, "w-dead", 3, 30, track_run=True)
        if job != pending:
            store.attempts.mark_run_began(job, last.lease)
        if job == finished:
            store.attempts.mark_run_finished(job, last.lease)
    clock.now += 400
    report = sweep(store, max_attempts=3, stale_after_s=300)
    assert (report.expired, report.requeued, report.failed) == (3, 2, 1)
    for job in (pending, finished):
        record = store.get(job)
        assert (record["status"], record["attempts"], record["handbacks"]) == (QUEUED, 2, 1)
        assert RUN_PENDING not in record and RUN_FINISHED not in record
        assert store.attempts.start_attempt(job, "w-3", 3, 30).number == 3
    assert store.get(died)["status"] == FAILED and store.get(died)["error"]["code"] == "lease-expired"
    assert store.get(pending)["status"] == RUNNING
