"""A final write that DynamoDB applied and then answered with an error (a 500 may follow a write that
applied): botocore retries it, the retry's lease condition fails on our own final record, and the store
must say "written" (issue 28, finding 1), or the worker takes it as fenced out and deletes the outputs
that the final record points at (invariant 2)."""

from __future__ import annotations

from typing import Any

from runtime.jobs.store import FAILED, SUCCEEDED, JobStore
from tests.unit.job_store_fixtures import OUT, new_job


class AppliedThenRetried:
    """A DynamoDB client whose next UpdateItem lands, loses its answer, and is sent again (botocore's retry
    after a 500): the caller sees only the retry's outcome."""

    def __init__(self, client: Any) -> None:
        self._client, self.armed = client, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            self._client.update_item(**kwargs)  # applied; the 500 that followed is not the caller's to see
        return self._client.update_item(**kwargs)


def _store(aws_clients, job_table, clock) -> tuple[JobStore, AppliedThenRetried]:
    client = AppliedThenRetried(aws_clients("dynamodb"))
    return JobStore(job_table, client, clock=clock), client


def test_success_that_landed_before_the_error_is_ours(aws_clients, job_table, clock):
    store, client = _store(aws_clients, job_table, clock)
    job = new_job(store)
    attempt = store.attempts.start_attempt(job, "w-1", 3, 30)
    client.armed = True
    assert store.mark_succeeded(job, OUT, {"total_ms": 12.5}, lease=attempt.lease) is True
    final = store.get(job)
    assert final["status"] == SUCCEEDED and final["outputs"] == OUT and final["lease"] == attempt.lease


def test_failure_that_landed_before_the_error_is_ours(aws_clients, job_table, clock):
    store, client = _store(aws_clients, job_table, clock)
    job = new_job(store)
    attempt = store.attempts.start_attempt(job, "w-1", 3, 30)
    client.armed = True
    assert store.mark_failed(job, {"code": "bad-input", "message": "no"}, lease=attempt.lease) is True


def test_another_final_write_under_the_same_lease_is_not_ours(aws_clients, job_table, clock):
    """The sweeper fails an expired last attempt without taking its lease: same lease, other fields."""
    store, _ = _store(aws_clients, job_table, clock)
    job = new_job(store)
    attempt = store.attempts.start_attempt(job, "w-1", 3, 30)
    assert store.mark_failed(job, {"code": "lease-expired", "message": "stopped renewing"}) is True
    assert store.mark_failed(job, {"code": "backend", "message": "boom"}, lease=attempt.lease) is False
    assert store.mark_succeeded(job, OUT, {}, lease=attempt.lease) is False
    assert store.get(job)["status"] == FAILED


def test_a_later_lease_is_still_fenced_out(aws_clients, job_table, clock):
    store, _ = _store(aws_clients, job_table, clock)
    job = new_job(store)
    stale = store.attempts.start_attempt(job, "w-1", 3, 30)
    owner = store.attempts.start_attempt(job, "w-2", 3, 30)
    assert store.mark_succeeded(job, OUT, {}, lease=owner.lease) is True
    assert store.mark_succeeded(job, OUT, {}, lease=stale.lease) is False  # same outputs, not its lease
