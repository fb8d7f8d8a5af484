"""Lease times in AWS's time, whatever the worker's clock says (issue 28, finding 2): a worker 90 s behind
used to write leases that the sweeper found expired at once (22 attempts swept about 1 s after the claim)."""

from __future__ import annotations

import time

from runtime.aws_clock import AwsClock
from runtime.functions.reconciler import sweep
from runtime.jobs.store import RUNNING, JobStore
from tests.unit.job_store_fixtures import new_job


def test_offset_is_the_median_of_date_headers():
    local = [1_000.0]
    clock = AwsClock(clock=lambda: local[0])
    assert clock.now() == 1_000.0 and clock.offset == 0.0
    for date in ("Thu, 01 Jan 1970 00:18:10 GMT", "Thu, 01 Jan 1970 00:18:10 GMT", "Thu, 01 Jan 1970 00:30:00 GMT"):
        clock.observe(date)  # 1090 s twice and one odd answer
    assert clock.offset == 90.5 and clock.now() == 1_090.5
    clock.observe("not a date")
    clock.observe(None)
    assert clock.offset == 90.5


def test_a_worker_90s_behind_writes_leases_the_sweeper_does_not_expire(aws_clients, job_table):
    behind = AwsClock(clock=lambda: time.time() - 90)
    worker = JobStore(job_table, behind.attach(aws_clients("dynamodb")), clock=behind.now)
    sweeper = JobStore(job_table, aws_clients("dynamodb"))  # the sweeper's clock is right
    job = new_job(sweeper)
    behind.probe = lambda: worker.get("clock-probe")
    attempt = worker.attempts.start_attempt(job, "w-1", 3, lease_seconds=10)  # the first call: probed first
    assert 88 < behind.offset < 92
    assert abs(float(attempt.record["lease_expires_at"]) - (time.time() + 10)) < 3
    report = sweep(sweeper, max_attempts=3, stale_after_s=6)
    assert report.expired == 0 and sweeper.get(job)["status"] == RUNNING
    assert worker.attempts.renew_lease(job, attempt.lease, 10)


def test_without_the_measured_offset_the_same_worker_is_swept_at_once(aws_clients, job_table):
    """The fault itself: leases written on a clock 90 s behind look expired to a right sweeper."""
    worker = JobStore(job_table, aws_clients("dynamodb"), clock=lambda: time.time() - 90)
    sweeper = JobStore(job_table, aws_clients("dynamodb"))
    job = new_job(worker)
    worker.attempts.start_attempt(job, "w-1", 3, lease_seconds=10)
    assert sweep(sweeper, max_attempts=3, stale_after_s=6).expired == 1
