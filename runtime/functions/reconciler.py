"""Dead letters and dead workers always end final (invariant 1): the DLQ consumer and the lease sweeper.

SQS redrives a message to the DLQ on the receive after its limit, so no worker ever sees that
receive; a worker killed mid-job leaves its record "running". Two Lambda handlers close both gaps:

- ``dead_letter_handler`` (SQS event source on the jobs DLQ): every message that lands there makes its
  job final ``failed`` with code ``dead-lettered``, the reason and the attempt history, unless the
  record is final already (a worker finished it). The stream then sends the ``completed`` webhook.
- ``sweep_handler`` (scheduled): records whose lease ran out more than ``GENAI_STALE_LEASE_SECONDS``
  ago belong to a dead worker: the job goes back to ``queued`` with an attempt error (its message is
  redelivered by the queue), or ``failed`` when it had no attempt left. Fenced on the lease it read.
  The same run cancels the never-started queued jobs whose deadline passed (issue 44): the sparse
  ``queued-by-deadline`` index, each job ``canceled`` with ``cancel_reason: deadline`` (the stream sends its
  ``completed`` webhook); its queue message stays until a worker receives it and drops it (one read).

Environment: GENAI_JOB_TABLE, GENAI_MAX_ATTEMPTS (the stack's maxReceiveCount),
GENAI_STALE_LEASE_SECONDS (default 300), GENAI_AWS_ENDPOINT_URL (moto / local mode).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.functions import environment
from runtime.jobs.attempts import attempt_history
from runtime.jobs.store import FINAL, JobStore
from runtime.queues.base import MessageFormatError, QueueMessage

log = logging.getLogger(__name__)

DEFAULT_STALE_LEASE_SECONDS = 300


@dataclass(frozen=True)
class SweepReport:
    expired: int
    requeued: int
    failed: int
    deadline_canceled: int = 0


def reconcile_dead_letter(store: JobStore, body: str, receive_count: int | None = None) -> str:
    """Make the dead-lettered job final; returns what happened (failed | final-already | no-record | bad-body)."""
    try:
        message = QueueMessage.from_json(body)
    except MessageFormatError as exc:
        log.error("DLQ message is not a job message (%s); nothing to reconcile", exc)
        return "bad-body"
    record = store.get(message.job_id)
    if record is None:
        return "no-record"
    if record["status"] in FINAL:
        return "final-already"
    received = f" after {receive_count} receives" if receive_count else ""
    reason = f"the queue gave up on this job{received} ({attempt_history(record)})"
    written = store.mark_failed(message.job_id, {"code": "dead-lettered", "message": reason})
    log.warning("job %s dead-lettered: %s", message.job_id, reason)
    return "failed" if written else "final-already"


def sweep(store: JobStore, max_attempts: int, stale_after_s: float, now: float | None = None) -> SweepReport:
    """Reconcile every lease that ran out before ``now - stale_after_s``."""
    cutoff = (store.attempts.clock() if now is None else now) - stale_after_s
    requeued = failed = 0
    records = store.attempts.expired_leases(cutoff)
    for record in records:
        outcome = store.attempts.expire_lease(record, cutoff, max_attempts)
        requeued += outcome == "queued"
        failed += outcome == "failed"
        if outcome:
            log.warning("job %s: lease of %s expired; %s", record["job_id"], record.get("worker_id"), outcome)
    return SweepReport(len(records), requeued, failed, cancel_expired_deadlines(store, now))


def cancel_expired_deadlines(store: JobStore, now: float | None = None, limit: int = 100) -> int:
    """Cancel the queued jobs not started by their deadline (issue 44); how many this call canceled."""
    now = store.attempts.clock() if now is None else now
    canceled = 0
    for job_id in store.deadline_passed_ids(now, limit):
        if store.attempts.cancel_expired(job_id, now):
            canceled += 1
            log.info("job %s: not started before its deadline; canceled", job_id)
    return canceled


def _store() -> JobStore:
    return JobStore(os.environ["GENAI_JOB_TABLE"], environment.client("dynamodb"))


_cached: dict[str, Any] = {}


def dead_letter_handler(event: Mapping[str, Any], _context: Any = None) -> dict[str, Any]:
    """Lambda entry: SQS event source on the jobs DLQ (ReportBatchItemFailures)."""
    store = _cached.setdefault("store", _store())
    failures, outcomes = [], []
    for record in event.get("Records", []):
        receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount", "0")) or None
        try:
            outcomes.append(reconcile_dead_letter(store, record["body"], receives))
        except Exception as exc:  # noqa: BLE001 - retried by the event source; never drop a dead letter
            log.error("reconciling %s failed: %s", record.get("messageId"), exc)
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures, "outcomes": outcomes}


def sweep_handler(_event: Mapping[str, Any] | None = None, _context: Any = None) -> dict[str, int]:
    """Lambda entry: scheduled sweep of expired leases."""
    store = _cached.setdefault("store", _store())
    report = sweep(store, int(os.environ.get("GENAI_MAX_ATTEMPTS", "3")),
                   float(os.environ.get("GENAI_STALE_LEASE_SECONDS", DEFAULT_STALE_LEASE_SECONDS)))
    return {"expired": report.expired, "requeued": report.requeued, "failed": report.failed,
            "deadline_canceled": report.deadline_canceled}
