"""Settling one attempt exactly once, by what happened (the causes come from runtime.worker.failures)::

    succeeded                     outputs under outputs/<job>/<lease>/, final write fenced on the lease,
                                  message acknowledged; a fenced-out write discards the outputs
    canceled (requested)          record canceled (fenced), message acknowledged
    handed back (drain / stop)    attempt given back (not counted), message visible again at once
    lost lease                    outputs discarded, nothing recorded: another attempt owns the job
    permanent error               record failed, message acknowledged
    transient error               attempt error recorded (counted), retried after retry_delay_seconds;
                                  on the last attempt: record failed, message dead-lettered
    infrastructure error          attempt given back (not counted), message retried after a backoff

Each settling write carries the attempt's cost (runtime.worker.attempt_cost); once written, the tenant's daily
spend is charged (runtime.jobs.spend: best effort, after the record) and its ``TenantSpend`` metric emitted.

Webhooks are not sent here: the webhook dispatcher derives them from the job table's stream, so a
worker never waits on a receiver (invariant 4).
"""

from __future__ import annotations

import logging
import time

from runtime import metric_names as m
from runtime.backends.base import BackendResult, JobInterrupted
from runtime.jobs.attempts import attempt_history
from runtime.jobs.errors import StoreUnavailableError
from runtime.jobs.progress import Progress
from runtime.jobs.spend import TenantSpend, utc_day
from runtime.jobs.store import JobStore
from runtime.queues.base import QueueError
from runtime.worker.attempt_cost import AttemptCoster
from runtime.worker.backoff import InfraBackoff
from runtime.worker.checkpoint import FRESH_S, Checkpoint
from runtime.worker.failures import Cause, Disposition, classify
from runtime.worker.messages import MessageActions
from runtime.worker.metrics import Metrics
from runtime.worker.outcomes import Outcome, StopReason
from runtime.worker.outputs import OutputUploader
from runtime.worker.progress_reporter import ProgressReporter
from runtime.worker.running_job import RunningJob

log = logging.getLogger(__name__)

FINAL = ("succeeded", "failed", "canceled")


class Settlement:
    def __init__(self, *, store: JobStore, messages: MessageActions, uploader: OutputUploader, metrics: Metrics,
                 backoff: InfraBackoff, checkpoint: Checkpoint, worker_id: str, generator: str, max_attempts: int,
                 retry_delay_seconds: float, coster: AttemptCoster | None = None,
                 spend: TenantSpend | None = None, progress: ProgressReporter | None = None) -> None:
        self._progress = progress  # the attempt's events are written before its final write (issue 38)
        self._store, self._messages, self._uploader, self._metrics = store, messages, uploader, metrics
        self._backoff, self._checkpoint, self._worker_id, self._generator = backoff, checkpoint, worker_id, generator
        self._max_attempts, self._retry_delay_s = max_attempts, retry_delay_seconds
        self._coster = coster  # each settling write appends its attempt's cost (runtime.worker.attempt_cost)
        self._spend = spend  # the tenant's daily spend (runtime.jobs.spend)

    def _cost(self, job: RunningJob, outcome: Outcome) -> dict | None:
        job.cost = self._coster.entry(job, str(outcome)) if self._coster is not None else None
        return job.cost

    def _charge(self, job: RunningJob, outcome: Outcome) -> None:
        """The tenant's spend, after the write that carried the attempt's cost (never raises)."""
        entry, record = job.cost, job.attempt.record or {}
        tenant = record.get("owner")
        if entry is None or not tenant or outcome in (Outcome.LOST_LEASE, Outcome.UNSETTLED):
            return
        final = outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELED)
        day = str(record.get("budget_day") or utc_day(float(record.get("created_at") or time.time())))
        self._metrics.emit({m.TENANT_SPEND: entry["usd"], m.TENANT_GPU_SECONDS: entry["gpu_seconds"]},
                           {"job_id": job.job_id, "outcome": str(outcome)}, dimensions={m.DIM_TENANT: tenant})
        if self._spend is None:
            return
        try:
            self._spend.charge(tenant, day, entry["usd"], entry["gpu_seconds"],
                               reserved_usd=float(record.get("budget_reserved_usd") or 0.0) if final else 0.0)
        except Exception as exc:  # noqa: BLE001 - the record has the cost; only the counter misses it
            log.warning("job %s: tenant spend not counted (%s); the job record has its cost", job.job_id, exc)

    def settle(self, job: RunningJob, outcome: BackendResult | Exception) -> Outcome:
        """Settle the backend's answer for this job (a result, or the exception its attempt ended with);
        never raises: what cannot be settled is left to the lease (it runs out and the job is retried)."""
        try:
            if isinstance(outcome, BackendResult):
                if self._progress is not None:
                    self._progress.report(job.job_id, job.attempt.lease, Progress("uploading"))
                settled = self._succeed(job, outcome)
            else:
                self._close_progress(job)
                settled = self._settle_exception(job, outcome)
            self._charge(job, settled)
            return settled
        except Exception:  # last line of defence
            log.exception("job %s: settling failed", job.job_id)
            return Outcome.UNSETTLED
        finally:
            job.release_guard()  # the message and the record's lease stay renewed until the job is settled

    # -- success ---------------------------------------------------------------------------------------
    def _succeed(self, job: RunningJob, result: BackendResult) -> Outcome:
        try:
            self._upload(job, result)
            return self._record_success(job, result)
        except Exception as exc:  # noqa: BLE001 - every cause is mapped in runtime.worker.failures
            return self._settle_exception(job, exc)

    def _upload(self, job: RunningJob, result: BackendResult) -> None:
        # Read unless the claim was moments ago: a worker frozen past its lease finds the claim stale (the
        # monotonic clock runs on) and reads; within FRESH_S of a claim no other attempt can own the job.
        self._checkpoint(job, FRESH_S)
        t = time.monotonic()
        uploaded = self._uploader.upload(job.job_id, result.outputs, result.metadata, attempt=job.attempt.lease,
                                         on_key=job.uploaded_keys.append)
        job.timings["upload_ms"] = _ms(t)
        if result.metadata.get("encode_ms") is not None:  # a video backend's encoder time (part of the run)
            job.timings["encode_ms"] = float(result.metadata["encode_ms"])
        result.metadata["uploaded"] = uploaded

    def _record_success(self, job: RunningJob, result: BackendResult) -> Outcome:
        timings, ctx = job.timings, job.ctx
        timings["total_ms"] = _ms(job.started)
        generator = result.metadata.get("generator") or self._generator
        outputs = [{"key": o["key"], "content_type": o["content_type"], "generator": generator,
                    **({"video": o["video"]} if o.get("video") else {})} for o in result.metadata["uploaded"]]
        self._close_progress(job)
        t = time.monotonic()
        written = self._store.mark_succeeded(ctx.job_id, outputs, timings, lease=job.attempt.lease,
                                             cost=self._cost(job, Outcome.SUCCEEDED))
        timings["record_ms"] = _ms(t)
        if not written:
            return self._fenced_out(job)
        t = time.monotonic()
        self._messages.ack(job.received)
        timings["ack_ms"] = _ms(t)
        values = {m.QUEUE_WAIT: timings["queue_wait_ms"], m.MODEL_LOAD_TIME: timings["model_load_ms"],
                  m.INFERENCE_TIME: timings["inference_ms"], m.UPLOAD_TIME: timings["upload_ms"],
                  m.JOB_LATENCY: timings["queue_wait_ms"] + timings["total_ms"], m.JOBS_SUCCEEDED: 1}
        self._metrics.emit(values, {"job_id": ctx.job_id, "worker_id": self._worker_id, "model": ctx.model,
                                    "attempt": job.attempt.number, "model_cache_hit": job.cache_hit})
        return Outcome.SUCCEEDED

    def _close_progress(self, job: RunningJob) -> None:
        """No events of this attempt after this point; what it reported is written before its outcome is."""
        if self._progress is not None:
            self._progress.close(job.job_id, job.attempt.lease)

    # -- failures --------------------------------------------------------------------------------------
    def _settle_exception(self, job: RunningJob, exc: Exception) -> Outcome:
        """Store or queue trouble while settling is logged and left to the lease, never raised."""
        self._close_progress(job)
        try:
            return self._by_cause(job, exc)
        except (StoreUnavailableError, QueueError) as settle_exc:
            log.error("job %s: could not settle (%s); its lease will run out and it will be retried",
                      job.job_id, settle_exc)
            self._backoff.failed()
            return Outcome.UNSETTLED

    def _by_cause(self, job: RunningJob, exc: Exception) -> Outcome:
        ctx, lease = job.ctx, job.attempt.lease
        if isinstance(exc, JobInterrupted) and job.reason is not None:
            return self._interrupted(job, job.reason)
        disposition = classify(exc)
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, JobInterrupted):  # a restart, another client or an operator: a failed attempt
            error = f"interrupted without a request from this agent: {error}"
        log.warning("job %s attempt %d failed (%s): %s", ctx.job_id, job.attempt.number, disposition.cause, error,
                    exc_info=disposition.code == "unexpected-error")
        self._metrics.count(m.JOB_ERRORS, job_id=ctx.job_id, attempt=job.attempt.number, error=error[:300],
                            cause=str(disposition.cause))
        self._discard(job)
        if disposition.cause is Cause.PERMANENT:
            return self._give_up(job, disposition.code, str(exc))
        if disposition.cause is Cause.INFRASTRUCTURE:
            self._store.attempts.release_attempt(ctx.job_id, lease, cost=self._cost(job, Outcome.DEFERRED))
            self._messages.release(job.received, self._backoff.failed(), "infrastructure")
            return Outcome.DEFERRED
        return self._retry_or_fail(job, disposition, error)

    def _interrupted(self, job: RunningJob, reason: StopReason) -> Outcome:
        ctx, lease = job.ctx, job.attempt.lease
        if reason is StopReason.CANCEL:
            self._discard(job)
            self._store.mark_canceled(ctx.job_id, lease=lease, cost=self._cost(job, Outcome.CANCELED))
            self._messages.ack(job.received)
            return Outcome.CANCELED
        if reason is StopReason.LOST_LEASE:
            return self._fenced_out(job)
        self._discard(job)  # drain or stop: another worker redoes the whole job
        self._store.attempts.release_attempt(ctx.job_id, lease, cost=self._cost(job, Outcome.HANDED_BACK))
        self._messages.release(job.received, 0, str(reason))
        self._metrics.count(m.JOBS_HANDED_BACK, job_id=ctx.job_id, reason=str(reason))
        return Outcome.HANDED_BACK

    def _retry_or_fail(self, job: RunningJob, disposition: Disposition, error: str) -> Outcome:
        ctx = job.ctx
        entry = {"code": disposition.code, "message": error[:1000]}
        if job.attempt.number >= self._max_attempts:
            self._store.record_attempt_error(ctx.job_id, job.attempt.number, entry)
            record = self._store.get(ctx.job_id) or {}
            return self._give_up(job, "attempts-exhausted", f"{error} ({attempt_history(record)})")
        if not self._store.attempts.fail_attempt(ctx.job_id, job.attempt.lease, job.attempt.number, entry,
                                                 cost=self._cost(job, Outcome.RETRYING)):
            return self._fenced_out(job)
        self._messages.release(job.received, self._retry_delay_s, "retry")
        return Outcome.RETRYING

    def _give_up(self, job: RunningJob, code: str, message: str) -> Outcome:
        """Record the job failed for good; its message is acknowledged (input error) or dead-lettered."""
        ctx = job.ctx
        job.timings["total_ms"] = _ms(job.started)
        written = self._store.mark_failed(ctx.job_id, {"code": code, "message": message[:2000]}, job.timings,
                                          lease=job.attempt.lease, cost=self._cost(job, Outcome.FAILED))
        if not written:
            return self._fenced_out(job)
        if code == "attempts-exhausted":
            self._messages.dead_letter(job.received, message)
        else:
            self._messages.ack(job.received)
        self._metrics.emit({m.JOBS_FAILED: 1}, {"job_id": ctx.job_id, "worker_id": self._worker_id, "code": code,
                                                "attempt": job.attempt.number})
        log.warning("job %s failed for good (%s): %s", ctx.job_id, code, message)
        return Outcome.FAILED

    def _fenced_out(self, job: RunningJob) -> Outcome:
        """Another attempt owns the job, or it became final meanwhile: our work is not the record's."""
        self._discard(job)
        record = self._store.get(job.job_id)
        if record is not None and record.get("status") in FINAL:
            self._messages.ack(job.received)  # the job is done; a stale receipt handle is harmless to SQS
        log.warning("job %s: attempt %d (lease %d) lost its lease; outputs discarded", job.job_id,
                    job.attempt.number, job.attempt.lease)
        self._metrics.count(m.LEASES_LOST, job_id=job.job_id, worker_id=self._worker_id)
        return Outcome.LOST_LEASE

    def _discard(self, job: RunningJob) -> None:
        """Delete what this attempt uploaded (it will never be referenced by the record)."""
        keys, job.uploaded_keys = job.uploaded_keys, []
        if keys:
            self._uploader.discard(keys)


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)
