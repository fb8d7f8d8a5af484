"""Attempts, leases and fencing on the job record (runtime.jobs.attempts) and the reconcilers
(runtime.functions.reconciler) against moto's DynamoDB: counted at pick-up, fenced final writes, hand-backs that
give their count back, dead letters and expired leases that always end final."""

from __future__ import annotations

from typing import Any

from runtime.functions.reconciler import reconcile_dead_letter, sweep
from runtime.jobs.attempts import CANCELED_NOW, EXHAUSTED, FINAL_ALREADY, STARTED, AttemptTransitions, RecordTable
from runtime.jobs.store import FAILED, QUEUED, RUNNING, SUCCEEDED, JobStore
from runtime.queues.base import QueueMessage
from tests.unit.job_store_fixtures import OUT, SPEC, new_job


def test_each_pick_up_counts_and_takes_a_new_lease(store):
    job = new_job(store)
    first = store.attempts.start_attempt(job, "w-1", 3, 30)
    second = store.attempts.start_attempt(job, "w-2", 3, 30)  # the first worker died; its lease is taken over
    assert (first.outcome, first.number, first.lease) == (STARTED, 1, 1)
    assert (second.outcome, second.number, second.lease) == (STARTED, 2, 2)
    assert store.get(job)["worker_id"] == "w-2"


def test_final_write_is_fenced_on_the_lease(store):
    job = new_job(store)
    stale = store.attempts.start_attempt(job, "w-1", 3, 30)
    owner = store.attempts.start_attempt(job, "w-2", 3, 30)
    assert store.mark_succeeded(job, OUT, {}, lease=stale.lease) is False  # the frozen worker woke up late
    assert store.attempts.renew_lease(job, stale.lease, 30) is False
    assert store.get(job)["status"] == RUNNING
    assert store.mark_succeeded(job, OUT, {}, lease=owner.lease) is True
    final = store.get(job)
    assert final["status"] == SUCCEEDED and final["outputs"] == OUT
    assert "lease_expires_at" not in final and "running_index" not in final  # out of the sweeper's index
    assert store.mark_failed(job, "late", lease=owner.lease) is False  # final never changes


def test_hand_back_gives_the_attempt_back_and_a_failed_attempt_keeps_it(store):
    job = new_job(store)
    a1 = store.attempts.start_attempt(job, "w-1", 3, 30)
    assert store.attempts.release_attempt(job, a1.lease) is True  # spot drain: not counted
    record = store.get(job)
    assert record["status"] == QUEUED and record["attempts"] == 0 and record["handbacks"] == 1
    a2 = store.attempts.start_attempt(job, "w-2", 3, 30)
    assert (a2.number, a2.lease) == (1, 2)  # counted again from 1; the token is never reused
    assert store.attempts.fail_attempt(job, a2.lease, a2.number, {"code": "backend-error", "message": "OOM"}) is True
    # not ours now
    assert store.attempts.fail_attempt(job, a2.lease, a2.number, {"code": "x", "message": "again"}) is False
    record = store.get(job)
    assert record["status"] == QUEUED and record["attempts"] == 1
    assert [e["code"] for e in record["attempt_errors"]] == ["backend-error"]


def test_attempt_limit_fails_the_job_with_its_history(store):
    job = new_job(store)
    for n in range(1, 4):
        attempt = store.attempts.start_attempt(job, f"w-{n}", 3, 30)
        store.attempts.fail_attempt(job, attempt.lease, attempt.number,
                                    {"code": "backend-error", "message": f"boom {n}"})
    exhausted = store.attempts.start_attempt(job, "w-4", 3, 30)
    assert exhausted.outcome == EXHAUSTED
    final = store.get(job)
    assert final["status"] == FAILED and final["error"]["code"] == "attempts-exhausted"
    assert "boom 3" in final["error"]["message"] and "3 attempt(s)" in final["error"]["message"]
    assert store.attempts.start_attempt(job, "w-5", 3, 30).outcome == FINAL_ALREADY


def test_cancel_requested_while_a_dead_worker_held_it(store):
    job = new_job(store)
    store.attempts.start_attempt(job, "w-1", 3, 30)
    store.request_cancel(job)
    assert store.attempts.start_attempt(job, "w-2", 3, 30).outcome == CANCELED_NOW
    assert store.get(job)["status"] == "canceled"


def test_dead_letter_reconciler_makes_a_running_job_final(store):
    job = new_job(store)
    store.attempts.start_attempt(job, "w-1", 3, 30)  # then the worker was killed, three times over
    body = QueueMessage(job_id=job, job=SPEC).to_json()
    assert reconcile_dead_letter(store, body, receive_count=9) == "failed"
    final = store.get(job)
    assert final["status"] == FAILED and final["error"]["code"] == "dead-lettered"
    assert "after 9 receives" in final["error"]["message"] and "1 attempt(s)" in final["error"]["message"]
    assert reconcile_dead_letter(store, body) == "final-already"  # the DLQ delivers at least once
    assert reconcile_dead_letter(store, "not json") == "bad-body"
    other = QueueMessage(job_id="j_00000000000000000000000000", job=SPEC).to_json()
    assert reconcile_dead_letter(store, other) == "no-record"


def test_sweeper_requeues_or_fails_expired_leases_and_spares_live_ones(store, clock):
    dead_early, dead_last, alive = new_job(store), new_job(store), new_job(store)
    store.attempts.start_attempt(dead_early, "w-dead", 3, 30)
    for n in range(3):
        a = store.attempts.start_attempt(dead_last, "w-dead", 3, 30)
        if n < 2:
            store.attempts.fail_attempt(dead_last, a.lease, a.number, {"code": "backend-error", "message": "x"})
    clock.now += 400
    live = store.attempts.start_attempt(alive, "w-live", 3, 30)
    report = sweep(store, max_attempts=3, stale_after_s=300)
    assert (report.expired, report.requeued, report.failed) == (2, 1, 1)
    assert store.get(dead_early)["status"] == QUEUED
    assert store.get(dead_early)["attempt_errors"][-1]["code"] == "lease-expired"
    assert store.get(dead_last)["status"] == FAILED and store.get(dead_last)["error"]["code"] == "lease-expired"
    assert store.get(alive)["status"] == RUNNING and store.attempts.renew_lease(alive, live.lease, 30)
    assert sweep(store, max_attempts=3, stale_after_s=300).expired == 0  # nothing left to do


class _Door:
    """The job table seen through a door that notes every attribute the transitions reach for."""

    def __init__(self, table: JobStore) -> None:
        self._table, self.used = table, set()

    def __getattr__(self, name: str) -> Any:
        self.used.add(name)
        return getattr(self._table, name)


def test_the_transitions_are_a_part_that_writes_through_the_record_table_door_only(store, clock):
    """Not a mixin of the store with ``Any`` stubs: a part given the table (``get``, ``update``,
    ``lease_expired_ids``) and a clock; the store holds one over itself."""
    assert AttemptTransitions not in type(store).__mro__ and store.attempts.table is store
    door = _Door(store)
    attempts = AttemptTransitions(door, clock)
    job, other = new_job(store), new_job(store)
    first = attempts.start_attempt(job, "w-1", 3, 30, track_run=True)
    attempts.mark_run_began(job, first.lease)
    attempts.mark_run_finished(job, first.lease)
    assert attempts.renew_lease(job, first.lease, 30)
    assert attempts.release_attempt(job, first.lease)
    second = attempts.start_attempt(job, "w-1", 3, 30)
    assert attempts.fail_attempt(job, second.lease, second.number, {"code": "oom", "message": "x"})
    third = attempts.start_attempt(other, "w-2", 3, 30)
    clock.now += 100
    assert [r["job_id"] for r in attempts.expired_leases(clock())] == [other]
    assert attempts.expire_lease(store.get(other), clock(), 3) == "queued"
    assert attempts.finish(job, FAILED, {"error": {"code": "x", "message": "y"}}) and third.started
    doors = {name for name in vars(RecordTable) if not name.startswith("_")}
    assert door.used == doors == {"get", "update", "lease_expired_ids"}
