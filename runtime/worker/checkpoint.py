"""Between an attempt's phases: stop when interrupted, when a cancel was requested, or when the record no
longer names this attempt (checked right before the upload too, so a worker that was frozen past its lease
does not write once it wakes). Within ``fresh_s`` of the claim the record is not read again: it named this
attempt then, and the lease guard watches it from there on."""

from __future__ import annotations

import time

from runtime.backends.base import JobInterrupted
from runtime.jobs.store import JobStore
from runtime.worker.guard import stop_reason
from runtime.worker.running_job import RunningJob

FRESH_S = 0.25  # a record read this recently (at the claim) is not read again before the backend starts


class Checkpoint:
    def __init__(self, store: JobStore) -> None:
        self._store = store

    def __call__(self, job: RunningJob, fresh_s: float = 0.0) -> None:
        """Raise JobInterrupted when the attempt must stop (its ``reason`` says why)."""
        if job.reason is None and time.monotonic() - job.claimed >= fresh_s:
            record = self._store.get(job.job_id)
            # a missing record is the settle's to find (its fenced writes fail); a reason the agent gave
            # while the record was read (a stop, a drain) is kept
            verdict = stop_reason(record, job.attempt.lease) if record is not None else None
            if verdict is not None and job.reason is None:
                job.reason = verdict
        if job.reason is not None:
            raise JobInterrupted(f"job {job.job_id} interrupted ({job.reason})")
