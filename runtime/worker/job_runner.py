"""One attempt of one job: claim it in the record, run its phases, settle it exactly once.

Settling, by what happened (the causes come from runtime.worker.failures)::

    succeeded                     outputs under outputs/<job>/<lease>/, final write fenced on the lease,
                                  message acknowledged; a fenced-out write discards the outputs
    canceled (requested)          record canceled (fenced), message acknowledged
    handed back (drain / stop)    attempt given back (not counted), message visible again at once
    lost lease                    outputs discarded, nothing recorded: another attempt owns the job
    permanent error               record failed, message acknowledged
    transient error               attempt error recorded (counted), retried after retry_delay_seconds;
                                  on the last attempt: record failed, message to the DLQ
    infrastructure error          attempt given back (not counted), message retried after a backoff

Webhooks are not sent here: the webhook dispatcher derives them from the job table's stream, so a
worker never waits on a receiver (invariant 4).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime import metric_names as m
from runtime.backends.base import BackendUnavailable, JobContext, JobInputError, JobInterrupted
from runtime.jobs.attempts import EXHAUSTED, MISSING, Attempt, attempt_history
from runtime.jobs.errors import JobNotFoundError, StoreUnavailableError
from runtime.jobs.schema import JobSpec
from runtime.queues.base import QueueError, ReceivedJob
from runtime.worker.failures import INFRASTRUCTURE, PERMANENT, Disposition, classify
from runtime.worker.inputs import read_job
from runtime.worker.prefetch import Prepared

if TYPE_CHECKING:
    from runtime.worker.agent import Agent

log = logging.getLogger(__name__)

FRESH_S = 0.25  # a record read this recently (at the claim) is not read again before the backend starts


@dataclass
class RunningJob:
    received: ReceivedJob
    ctx: JobContext
    attempt: Attempt
    started: float = field(default_factory=time.monotonic)
    claimed: float = field(default_factory=time.monotonic)  # when start_attempt confirmed the lease
    reason: str | None = None  # why the agent interrupted it: cancel | drain | stop | lost-lease
    uploaded_keys: list[str] = field(default_factory=list)
    picked: float = field(default_factory=time.monotonic)  # taken off the prefetch (stats: pick-up to settled)
    timings: dict[str, float] = field(default_factory=dict)
    prepared: Prepared | None = None
    guard: Any = None  # its LeaseGuard, from the claim until it is settled
    run_span: tuple[float, float] | None = None  # monotonic start and end of backend.run
    switched: bool = False  # the backend changed model for this job (model affinity metrics)


class JobRunner:
    """Runs one claimed attempt for the agent; every outcome goes through ``settle_*``."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.cfg = agent.config

    # -- claiming --------------------------------------------------------------------------------------
    def claim(self, received: ReceivedJob, timings: dict[str, float], track_run: bool = False,
              job: JobSpec | None = None) -> RunningJob | str:
        """Start the attempt in the record (right before the job runs); an outcome when it must not run.
        ``track_run``: the caller marks the run's beginning and end (runtime.worker.run_marks). ``job``: the
        message's typed spec when the prefetch read it (else it is read here)."""
        agent, message = self.agent, received.message
        job_id = message.job_id
        lease_s = self.cfg.queue.visibility_timeout_seconds
        t = time.monotonic()
        try:
            attempt = agent.store.start_attempt(job_id, agent.worker_id, self.cfg.queue.max_receive_count, lease_s,
                                                track_run=track_run)
        except JobNotFoundError:
            log.error("job %s has no record; dropping its message", job_id)
            self._ack(received)
            return "orphaned"
        except StoreUnavailableError as exc:
            log.error("job %s: could not claim it (%s); handing it back", job_id, exc)
            self.release(received, agent.infrastructure_trouble(), "store unavailable")
            return "deferred"
        timings["mark_running_ms"] = _ms(t)
        if not attempt.started:  # final already (a redelivery), canceled while queued, or out of attempts
            self._ack(received)
            if attempt.outcome == EXHAUSTED:
                agent.metrics.emit({m.JOBS_FAILED: 1}, {"job_id": job_id, "worker_id": agent.worker_id,
                                                        "code": "attempts-exhausted"})
            return "skipped" if attempt.outcome != MISSING else "orphaned"
        try:
            spec = job if job is not None else read_job(message.job, allow_loopback=self.cfg.allow_loopback_urls)
        except JobInputError as exc:
            return self._refuse(received, attempt, exc)
        ctx = JobContext(job_id=job_id, job=spec, deadline=time.monotonic() + self.cfg.max_job_seconds)
        return RunningJob(received, ctx, attempt)

    def _refuse(self, received: ReceivedJob, attempt: Attempt, exc: JobInputError) -> str:
        """A spec that breaks the API's rules fails for good at its claim: nothing of it runs."""
        agent, job_id = self.agent, received.message.job_id
        code = classify(exc).code
        if not agent.store.mark_failed(job_id, {"code": code, "message": str(exc)[:2000]}, lease=attempt.lease):
            log.warning("job %s: its spec does not parse, and another attempt owns it now", job_id)
            return "skipped"  # not acknowledged: whoever owns the job settles it
        self._ack(received)
        agent.metrics.emit({m.JOBS_FAILED: 1}, {"job_id": job_id, "worker_id": agent.worker_id, "code": code,
                                                 "attempt": attempt.number})
        log.warning("job %s failed for good (%s): %s", job_id, code, exc)
        return "failed"

    # -- phases --------------------------------------------------------------------------------------
    def checkpoint(self, job: RunningJob, fresh_s: float = 0.0) -> None:
        """Between phases: stop when interrupted, when a cancel was requested, or when the record no longer
        names this attempt (checked right before the upload too, so a worker that was frozen past its lease
        does not write once it wakes). Within ``fresh_s`` of the claim the record is not read again: it
        named this attempt then, and the lease guard watches it from there on."""
        stale = time.monotonic() - job.claimed >= fresh_s
        record = self.agent.store.get(job.ctx.job_id) if job.reason is None and stale else None
        if record is not None:
            if int(record.get("lease") or 0) != job.attempt.lease or record.get("status") != "running":
                job.reason = "cancel" if record.get("status") == "canceled" else "lost-lease"
            elif record.get("cancel_requested"):
                job.reason = "cancel"
        if job.reason is not None:
            raise JobInterrupted(f"job {job.ctx.job_id} interrupted ({job.reason})")

    def run_backend(self, job: RunningJob, timings: dict[str, float], backend_s: list[float],
                    prepared: Prepared | None = None, on_run: Any = None) -> tuple[Any, bool | None]:
        """Inputs, model, inference: everything up to the backend's answer (the part that holds the backend)."""
        agent, ctx = self.agent, job.ctx
        ctx.job = ctx.job.with_seed()
        self.checkpoint(job, FRESH_S)
        ctx.before_submit = lambda: self.checkpoint(job)  # the backend's last check before it submits: always read
        t = time.monotonic()
        if prepared is not None and prepared.input_error is not None:
            raise prepared.input_error
        ctx.input_images = prepared.inputs if prepared is not None and prepared.inputs is not None \
            else agent.fetcher.fetch_all(ctx.job)
        timings["inputs_ms"] = _ms(t) + (prepared.inputs_ms if prepared is not None else 0.0)
        t = time.monotonic()
        cache_hit: bool | None = None
        with contextlib.ExitStack() as stack:
            if agent.model_cache is not None and ctx.model and agent.backend.name != "test-pattern":
                cached = stack.enter_context(agent.model_cache.use(ctx.model))
                # a download the prefetch did for this job is still this job's miss (it was hidden, not saved)
                early = prepared.model_hit if prepared is not None else None
                cache_hit = cached.hit if early is None else early and cached.hit
                ctx.model_path = cached.path
                load_ms = cached.load_ms + (prepared.model_ms if prepared is not None else 0.0)
                agent.metrics.count(m.MODEL_CACHE_HITS if cache_hit else m.MODEL_CACHE_MISSES, model=ctx.model,
                                    job_id=ctx.job_id, load_ms=load_ms)
            agent.backend.load_model(ctx.model or "", ctx.model_path)
            timings["model_load_ms"] = _ms(t)
            self.checkpoint(job, FRESH_S)
            if on_run is not None:
                on_run()  # the pipeline may claim the next job while this one runs
            t = time.monotonic()
            try:
                result = agent.backend.run(ctx)
            except BackendUnavailable:
                agent.backend_lost()
                raise
            finally:
                job.run_span = (t, time.monotonic())
                backend_s[0] = job.run_span[1] - t
                timings["inference_ms"] = _ms(t)
        return result, cache_hit

    def upload(self, job: RunningJob, result: Any, timings: dict[str, float]) -> None:
        # Read unless the claim was moments ago: a worker frozen past its lease finds the claim stale (the
        # monotonic clock runs on) and reads; within FRESH_S of a claim no other attempt can own the job.
        self.checkpoint(job, FRESH_S)
        t = time.monotonic()
        uploaded = self.agent.uploader.upload(job.ctx.job_id, result.outputs, result.metadata,
                                              attempt=job.attempt.lease, on_key=job.uploaded_keys.append)
        timings["upload_ms"] = _ms(t)
        result.metadata["uploaded"] = uploaded

    def finish(self, job: RunningJob, result: Any, timings: dict[str, float], cache_hit: bool | None) -> str:
        """Upload, record and acknowledge a job the backend answered; every failure is settled too."""
        try:
            self.upload(job, result, timings)
            return self.settle_success(job, result, timings, cache_hit)
        except Exception as exc:  # noqa: BLE001 - every cause is mapped in runtime.worker.failures
            return self.settle_exception(job, exc, timings)

    # -- settling ------------------------------------------------------------------------------------
    def settle_success(self, job: RunningJob, result: Any, timings: dict[str, float], cache_hit: bool | None) -> str:
        agent, ctx = self.agent, job.ctx
        timings["total_ms"] = _ms(job.started)
        generator = result.metadata.get("generator") or agent.backend.name
        outputs = [{"url": o["url"], "content_type": o["content_type"], "generator": generator}
                   for o in result.metadata["uploaded"]]
        t = time.monotonic()
        written = agent.store.mark_succeeded(ctx.job_id, outputs, timings, lease=job.attempt.lease)
        timings["record_ms"] = _ms(t)
        if not written:
            return self._fenced_out(job)
        t = time.monotonic()
        self._ack(job.received)
        timings["ack_ms"] = _ms(t)
        values = {m.QUEUE_WAIT: timings["queue_wait_ms"], m.MODEL_LOAD_TIME: timings["model_load_ms"],
                  m.INFERENCE_TIME: timings["inference_ms"], m.UPLOAD_TIME: timings["upload_ms"],
                  m.JOB_LATENCY: timings["queue_wait_ms"] + timings["total_ms"], m.JOBS_SUCCEEDED: 1}
        agent.metrics.emit(values, {"job_id": ctx.job_id, "worker_id": agent.worker_id, "model": ctx.model,
                                    "attempt": job.attempt.number, "model_cache_hit": cache_hit})
        return "succeeded"

    def settle_exception(self, job: RunningJob, exc: Exception, timings: dict[str, float]) -> str:
        """Every failure of a claimed attempt ends here; store or queue trouble while settling is
        logged and left to the lease (it runs out and the job is retried), never raised."""
        try:
            return self._settle_exception(job, exc, timings)
        except (StoreUnavailableError, QueueError) as settle_exc:
            log.error("job %s: could not settle (%s); its lease will run out and it will be retried",
                      job.ctx.job_id, settle_exc)
            self.agent.infrastructure_trouble()
            return "unsettled"

    def _settle_exception(self, job: RunningJob, exc: Exception, timings: dict[str, float]) -> str:
        agent, ctx, lease = self.agent, job.ctx, job.attempt.lease
        if isinstance(exc, JobInterrupted) and job.reason is not None:
            if job.reason == "cancel":
                self.discard(job)
                agent.store.mark_canceled(ctx.job_id, lease=lease)
                self._ack(job.received)
                return "canceled"
            if job.reason == "lost-lease":
                return self._fenced_out(job)
            self.discard(job)  # drain or stop: another worker redoes the whole job
            agent.store.release_attempt(ctx.job_id, lease)
            self.release(job.received, 0, job.reason)
            agent.metrics.count(m.JOBS_HANDED_BACK, job_id=ctx.job_id, reason=job.reason)
            return "handed-back"
        disposition = classify(exc)
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, JobInterrupted):  # a restart, another client or an operator: a failed attempt
            error = f"interrupted without a request from this agent: {error}"
        log.warning("job %s attempt %d failed (%s): %s", ctx.job_id, job.attempt.number, disposition.cause, error,
                    exc_info=disposition.code == "unexpected-error")
        agent.metrics.count(m.JOB_ERRORS, job_id=ctx.job_id, attempt=job.attempt.number, error=error[:300],
                            cause=disposition.cause)
        self.discard(job)
        if disposition.cause == PERMANENT:
            return self.give_up(job, disposition.code, str(exc), timings)
        if disposition.cause == INFRASTRUCTURE:
            agent.store.release_attempt(ctx.job_id, lease)
            self.release(job.received, agent.infrastructure_trouble(), "infrastructure")
            return "deferred"
        return self._retry_or_fail(job, disposition, error, timings)

    def _retry_or_fail(self, job: RunningJob, disposition: Disposition, error: str, timings: dict[str, float]) -> str:
        ctx, agent = job.ctx, self.agent
        entry = {"code": disposition.code, "message": error[:1000]}
        if job.attempt.number >= self.cfg.queue.max_receive_count:
            agent.store.record_attempt_error(ctx.job_id, job.attempt.number, entry)
            record = agent.store.get(ctx.job_id) or {}
            return self.give_up(job, "attempts-exhausted", f"{error} ({attempt_history(record)})", timings)
        if not agent.store.fail_attempt(ctx.job_id, job.attempt.lease, job.attempt.number, entry):
            return self._fenced_out(job)
        self.release(job.received, self.cfg.retry_delay_seconds, "retry")
        return "retrying"

    def give_up(self, job: RunningJob, code: str, message: str, timings: dict[str, float]) -> str:
        """Record the job failed for good; its message is acknowledged (input error) or dead-lettered."""
        agent, ctx = self.agent, job.ctx
        timings["total_ms"] = _ms(job.started)
        written = agent.store.mark_failed(ctx.job_id, {"code": code, "message": message[:2000]}, timings,
                                          lease=job.attempt.lease)
        if not written:
            return self._fenced_out(job)
        if code == "attempts-exhausted" and getattr(agent.consumer, "dead_letter", None) is not None:
            agent.consumer.dead_letter(job.received, message)
        else:
            self._ack(job.received)
        agent.metrics.emit({m.JOBS_FAILED: 1}, {"job_id": ctx.job_id, "worker_id": agent.worker_id, "code": code,
                                                 "attempt": job.attempt.number})
        log.warning("job %s failed for good (%s): %s", ctx.job_id, code, message)
        return "failed"

    def _fenced_out(self, job: RunningJob) -> str:
        """Another attempt owns the job, or it became final meanwhile: our work is not the record's."""
        self.discard(job)
        record = self.agent.store.get(job.ctx.job_id)
        if record is not None and record.get("status") in ("succeeded", "failed", "canceled"):
            self._ack(job.received)  # the job is done; a stale receipt handle is harmless to SQS
        log.warning("job %s: attempt %d (lease %d) lost its lease; outputs discarded", job.ctx.job_id,
                    job.attempt.number, job.attempt.lease)
        self.agent.metrics.count(m.LEASES_LOST, job_id=job.ctx.job_id, worker_id=self.agent.worker_id)
        return "lost-lease"

    def discard(self, job: RunningJob) -> None:
        """Delete what this attempt uploaded (it will never be referenced by the record)."""
        keys, job.uploaded_keys = job.uploaded_keys, []
        if keys:
            self.agent.uploader.discard(keys)

    def _ack(self, received: ReceivedJob) -> None:
        try:
            self.agent.consumer.ack(received)
        except QueueError as exc:  # the record is final: a redelivery finds it so and is acknowledged then
            log.warning("ack of %s failed (a redelivery will be skipped): %s", received.message.job_id, exc)

    def release(self, received: ReceivedJob, delay: float, why: str) -> None:
        try:
            self.agent.consumer.release(received, int(delay))
            log.info("job %s handed back (%s, visible in %ss)", received.message.job_id, why, int(delay))
        except QueueError as exc:
            log.error("hand back of %s failed (its lease will run out instead): %s", received.message.job_id, exc)


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)
