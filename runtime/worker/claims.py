"""The claim: start a received job's attempt in the record, right before it runs, and guard its lease.

``claim`` answers a ``RunningJob`` (its lease guard renewing the message and the record) or the ``Outcome``
of a job that must not run: final already or canceled while queued (``skipped``), not started before its
deadline (``skipped``, canceled with reason ``deadline`` by ``start_attempt``: issue 44), out of attempts
(``skipped``, failed by ``start_attempt``), no record (``orphaned``), or the store unreachable (``deferred``:
handed back after the infrastructure backoff). Attempts are counted here, in the record (invariant 3).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping

from runtime import metric_names as m
from runtime.backends.base import JobContext, JobInputError
from runtime.jobs.attempts import DEADLINE_PASSED, EXHAUSTED, MISSING, Attempt
from runtime.jobs.errors import JobNotFoundError, StoreUnavailableError
from runtime.jobs.store import JobStore
from runtime.jobs.time_limits import job_time_limit
from runtime.queues.base import JobQueueConsumer, ReceivedJob
from runtime.worker.backoff import InfraBackoff
from runtime.worker.failures import classify
from runtime.worker.guard import LeaseGuard
from runtime.worker.inputs import read_job
from runtime.worker.messages import MessageActions
from runtime.worker.metrics import Metrics
from runtime.worker.outcomes import Outcome, StopReason
from runtime.worker.prefetch import Prepared
from runtime.worker.recorder import JobRecorder
from runtime.worker.running_job import RunningJob

log = logging.getLogger(__name__)


class Claimer:
    def __init__(self, *, store: JobStore, consumer: JobQueueConsumer, messages: MessageActions, metrics: Metrics,
                 recorder: JobRecorder, backoff: InfraBackoff, worker_id: str, max_attempts: int, lease_seconds: float,
                 cancel_poll_seconds: float, max_job_seconds: float, retry_delay_seconds: float,
                 allow_loopback: bool, interrupt: Callable[[RunningJob, StopReason], None],
                 on_beat: Callable[[], None], task_max_job_seconds: Mapping[str, float] | None = None,
                 served_tasks: Collection[str] | None = None) -> None:
        self._store, self._consumer, self._messages, self._metrics = store, consumer, messages, metrics
        self._backoff, self._worker_id, self._recorder = backoff, worker_id, recorder
        self._max_attempts, self._lease_s = max_attempts, lease_seconds
        self._poll_s, self._max_job_s = cancel_poll_seconds, max_job_seconds
        self._retry_delay_s, self._allow_loopback = retry_delay_seconds, allow_loopback
        self._interrupt, self._on_beat = interrupt, on_beat
        self._task_limits = dict(task_max_job_seconds or {})
        self._served = tuple(served_tasks) if served_tasks is not None else None  # None: the backend's own checks

    def claim(self, received: ReceivedJob, prepared: Prepared | None, track_run: bool = False) -> RunningJob | Outcome:
        """``track_run``: the caller marks the run's beginning and end (runtime.worker.run_marks). Never raises;
        an outcome (a job that must not run) is recorded here."""
        picked = time.monotonic()
        message = received.message
        timings = {"queue_wait_ms": round(max(0.0, time.time() - message.enqueued_at) * 1000, 1)}
        if prepared is not None:
            timings["receive_ms"] = prepared.receive_ms
        try:
            claimed = self._claim(received, prepared, track_run, picked, timings)
        except Exception:  # every known failure is mapped below; this is the last line of defence
            log.exception("job %s: unexpected error outside an attempt; handing the message back", message.job_id)
            self._messages.release(received, self._retry_delay_s, "unexpected")
            claimed = Outcome.UNSETTLED
        if isinstance(claimed, Outcome):
            self._recorder.record(message.job_id, claimed, picked, 0.0, timings)
        return claimed

    def _claim(self, received: ReceivedJob, prepared: Prepared | None, track_run: bool, picked: float,
               timings: dict[str, float]) -> RunningJob | Outcome:
        message = received.message
        t = time.monotonic()
        try:
            attempt = self._store.attempts.start_attempt(message.job_id, self._worker_id, self._max_attempts,
                                                         self._lease_s, track_run=track_run)
        except JobNotFoundError:
            log.error("job %s has no record; dropping its message", message.job_id)
            self._messages.ack(received)
            return Outcome.ORPHANED
        except StoreUnavailableError as exc:
            log.error("job %s: could not claim it (%s); handing it back", message.job_id, exc)
            self._messages.release(received, self._backoff.failed(), "store unavailable")
            return Outcome.DEFERRED
        timings["mark_running_ms"] = round((time.monotonic() - t) * 1000, 1)
        if not attempt.started:  # final already (a redelivery), canceled while queued, or out of attempts
            self._messages.ack(received)
            if attempt.outcome == EXHAUSTED:
                self._metrics.emit({m.JOBS_FAILED: 1}, {"job_id": message.job_id, "worker_id": self._worker_id,
                                                        "code": "attempts-exhausted"})
            if attempt.outcome == DEADLINE_PASSED:  # not run, not charged: its message is dropped here
                log.info("job %s: not started before its deadline; canceled without running", message.job_id)
            return Outcome.SKIPPED if attempt.outcome != MISSING else Outcome.ORPHANED
        try:  # the prefetch read the spec already; the serial loop reads it here
            spec = prepared.job if prepared is not None and prepared.job is not None \
                else read_job(message.job, allow_loopback=self._allow_loopback)
        except JobInputError as exc:
            return self._refuse(received, attempt, exc)
        if self._served is not None and spec.task not in self._served:  # never a wrong kind of output
            return self._refuse(received, attempt, JobInputError(
                f"this fleet's backend does not serve {spec.task} jobs (it serves: {', '.join(self._served)}); "
                f"the API refuses them when the stack tells it the fleet's tasks (GENAI_TASKS)"))
        # the task's time limit (runtime.jobs.time_limits); it counts from when the backend starts the work
        ctx = JobContext(job_id=message.job_id, job=spec, time_limit_s=self.time_limit(spec.task))
        job = RunningJob(received, ctx, attempt, picked=picked, timings=timings, prepared=prepared)
        job.guard = LeaseGuard(
            consumer=self._consumer, store=self._store, received=received, job_id=message.job_id,
            lease=attempt.lease, lease_seconds=self._lease_s, poll_seconds=self._poll_s,
            on_cancel=lambda: self._interrupt(job, StopReason.CANCEL),
            on_lost=lambda why: self._lost(job, why), on_beat=self._on_beat).start()
        return job

    def time_limit(self, task: str) -> float:
        """Seconds a job of ``task`` may run: its task's limit, else max_job_seconds (runtime.jobs.time_limits)."""
        return job_time_limit(task, self._max_job_s, self._task_limits)

    def _refuse(self, received: ReceivedJob, attempt: Attempt, exc: JobInputError) -> Outcome:
        """A spec that breaks the API's rules fails for good at its claim: nothing of it runs."""
        job_id = received.message.job_id
        code = classify(exc).code
        if not self._store.mark_failed(job_id, {"code": code, "message": str(exc)[:2000]}, lease=attempt.lease):
            log.warning("job %s: its spec does not parse, and another attempt owns it now", job_id)
            return Outcome.SKIPPED  # not acknowledged: whoever owns the job settles it
        self._messages.ack(received)
        self._metrics.emit({m.JOBS_FAILED: 1}, {"job_id": job_id, "worker_id": self._worker_id, "code": code,
                                                "attempt": attempt.number})
        log.warning("job %s failed for good (%s): %s", job_id, code, exc)
        return Outcome.FAILED

    def _lost(self, job: RunningJob, why: str) -> None:
        log.warning("job %s: lease lost (%s); stopping the attempt", job.job_id, why)
        self._interrupt(job, StopReason.LOST_LEASE)
