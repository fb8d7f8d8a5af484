"""The agent's main loop: pull a job, run it through the backend, upload, record, notify, acknowledge.

One job at a time (one accelerator per instance). Threads: the main loop; per running job a
``_JobGuard`` thread that heartbeats the queue message and polls the cancel flag; the lifecycle
watcher (lifecycle.py); one webhook thread so slow receivers never delay jobs.

Outcome of an attempt, and what happens to its message::

    succeeded / canceled / input error  -> record final, message acknowledged
    backend or other error              -> attempt error recorded; message visible again after
                                           retry_delay_seconds; on the last attempt (receive count >=
                                           max_receive_count): record failed, message to the DLQ
    interrupted by drain or stop        -> message handed back at once (visibility 0), record untouched
    worker killed (SIGKILL, spot)       -> the lease runs out; another worker redoes it; the record's
                                           conditional transitions keep it recorded once
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from runtime import metric_names as m
from runtime.agent_config import AgentConfig
from runtime.backends.base import Backend, BackendError, BackendUnavailable, JobContext, JobInputError, JobInterrupted
from runtime.jobs.errors import JobNotFoundError, StoreUnavailableError
from runtime.model_cache import ModelCache, ModelCacheError, ModelUnavailable
from runtime.queues.base import JobQueueConsumer, QueueError, ReceivedJob
from runtime.worker.inputs import ImageFetcher
from runtime.worker.lifecycle import REBALANCE, SPOT, Lifecycle, Notice
from runtime.worker.metrics import Metrics
from runtime.worker.outputs import OutputUploader

log = logging.getLogger(__name__)


@dataclass
class RunningJob:
    received: ReceivedJob
    ctx: JobContext
    started: float = field(default_factory=time.monotonic)
    reason: str | None = None  # why it was interrupted: cancel | drain | stop


@dataclass
class JobStat:
    job_id: str
    outcome: str
    handle_s: float  # pick-up to acknowledged
    backend_s: float  # time inside backend.run


class _JobGuard:
    """Heartbeats the message and polls the job's cancel flag while it runs."""

    def __init__(self, agent: Agent, job: RunningJob) -> None:
        self.agent, self.job = agent, job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"guard-{job.ctx.job_id}", daemon=True)

    def __enter__(self) -> _JobGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        cfg = self.agent.config
        visibility = cfg.queue.visibility_timeout_seconds
        beat = max(1.0, visibility / 3)
        tick = max(0.2, min(beat, cfg.cancel_poll_seconds))
        next_beat = time.monotonic() + beat
        while not self._stop.wait(tick):
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + beat
                try:
                    self.agent.consumer.extend(self.job.received, visibility)
                except QueueError as exc:
                    log.warning("heartbeat for %s failed: %s", self.job.ctx.job_id, exc)
                if self.agent.notice is not None:
                    self.agent.lifecycle.heartbeat_terminating()
            try:
                if self.agent.store.is_cancel_requested(self.job.ctx.job_id):
                    self.agent.interrupt(self.job, "cancel")
            except StoreUnavailableError as exc:
                log.warning("cancel check for %s failed: %s", self.job.ctx.job_id, exc)


class Agent:
    def __init__(self, config: AgentConfig, *, consumer: JobQueueConsumer, store: Any, backend: Backend,
                 uploader: OutputUploader, metrics: Metrics, lifecycle: Lifecycle, worker_id: str,
                 model_cache: ModelCache | None = None, webhooks: Any = None,
                 fetcher: ImageFetcher | None = None) -> None:
        self.config = config
        self.consumer = consumer
        self.store = store
        self.backend = backend
        self.uploader = uploader
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.worker_id = worker_id
        self.model_cache = model_cache
        self.webhooks = webhooks
        self.fetcher = fetcher or ImageFetcher(allow_loopback=config.allow_loopback_urls)
        self.notice: Notice | None = None
        self.stats: list[JobStat] = []
        self.current: RunningJob | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._notify_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook")
        self._backend_ok = True
        self._busy_s = 0.0
        self._busy_since = time.monotonic()
        self._ewma_job_s: float | None = None
        self.rebalance: Notice | None = None  # a replacement is on its way; keep working until told to drain
        self.last_tick: float | None = None  # main loop progress (health probe); None until the loop runs

    # -- control (called from signal handlers and the lifecycle watcher) ------------------------------
    def stop(self) -> None:
        """Stop pulling and hand a running job back at once (SIGTERM, systemd stop)."""
        self._stopping.set()
        job = self.current
        if job is not None:
            self.interrupt(job, "stop")

    def on_notice(self, notice: Notice) -> None:
        """Spot notice or terminating state: drain (finish if it fits, else hand back). Rebalance: keep working."""
        names = {SPOT: m.SPOT_INTERRUPTIONS, REBALANCE: m.REBALANCE_RECOMMENDATIONS}
        if notice.kind in names:
            self.metrics.count(names[notice.kind], notice=notice.kind, worker_id=self.worker_id)
        if notice.kind == REBALANCE:
            # Only a risk signal: capacity rebalancing launches a replacement and this instance's
            # terminating hook (or the spot notice) starts the drain. Stopping now would leave an idle,
            # InService instance counted as capacity.
            self.rebalance = notice
            log.info("rebalance recommendation: keeping on working until a termination notice")
            return
        self.notice = notice
        self._stopping.set()
        job = self.current
        if job is None:
            return
        left = notice.seconds_left()
        if left is None:
            return  # terminating hook: heartbeats keep the action open while the job finishes
        cutoff = left - self.config.lifecycle.drain_margin_seconds
        if self._ewma_job_s is not None:
            remaining = max(0.0, self._ewma_job_s - (time.monotonic() - job.started))
            fits = remaining <= cutoff
            log.info("drain: job %s needs ~%.0fs, %.0fs usable: %s", job.ctx.job_id, remaining, cutoff,
                     "finishing" if fits else "handing back")
            if not fits:
                self.interrupt(job, "drain")
                return
        # No estimate yet (or it fits): keep going, but hand it back if it is still running at the cutoff.
        timer = threading.Timer(max(0.0, cutoff), self._drain_cutoff, args=(job,))
        timer.daemon = True
        timer.start()

    def _drain_cutoff(self, job: RunningJob) -> None:
        if self.current is job:
            log.warning("drain: job %s still running at the cutoff; handing it back", job.ctx.job_id)
            self.interrupt(job, "drain")

    def interrupt(self, job: RunningJob, reason: str) -> None:
        with self._lock:
            if job.reason is None or reason == "cancel":
                job.reason = reason
        try:
            self.backend.interrupt(job.ctx)
        except BackendError as exc:
            log.warning("interrupting %s: %s", job.ctx.job_id, exc)

    # -- boot ------------------------------------------------------------------------------------------
    def boot(self) -> None:
        """Preload hot models, check the backend, complete the launching lifecycle action.

        A hot model that cannot be fetched (not uploaded yet, store unreachable) is a warning and a
        ``BootWarnings`` metric: jobs fetch it on demand. A backend that never gets ready raises; the
        entry point then abandons the launch (runtime/worker/__main__.py).
        """
        for model_id in self.config.hot_models:
            if self.model_cache is None:
                break
            try:
                cached = self.model_cache.ensure(model_id)
            except ModelCacheError as exc:
                log.warning("hot model %s not preloaded: %s", model_id, exc, extra={"model": model_id})
                self.metrics.count(m.BOOT_WARNINGS, what="hot-model", model=model_id, error=str(exc)[:300])
                continue
            self.metrics.count(m.MODEL_CACHE_HITS if cached.hit else m.MODEL_CACHE_MISSES, model=model_id)
        self.backend.wait_ready(self.config.backend_ready_timeout_seconds)
        log.info("backend ready", extra={"check": self.backend.check()})
        self.lifecycle.complete_launching()
        self.metrics.emit({m.BOOT_TO_READY: _uptime_ms()}, {"worker_id": self.worker_id})

    # -- main loop -------------------------------------------------------------------------------------
    def run(self, max_jobs: int | None = None, idle_exit_seconds: float | None = None) -> int:
        """Pull and run jobs until stopped (or ``max_jobs`` / ``idle_exit_seconds`` for tests and benches)."""
        done, idle_since = 0, time.monotonic()
        wait = self.config.queue.wait_time_seconds
        while not self._stopping.is_set() and (max_jobs is None or done < max_jobs):
            self.last_tick = time.monotonic()
            self._ensure_backend()
            try:
                jobs = self.consumer.receive(1, wait)
            except QueueError as exc:
                log.error("receive failed: %s", exc)
                self._stopping.wait(2.0)
                continue
            if not jobs:
                self.lifecycle.protect(False)
                self._emit_busy()
                if idle_exit_seconds is not None and time.monotonic() - idle_since > idle_exit_seconds:
                    break
                continue
            for received in jobs:
                if self._stopping.is_set():
                    self._release(received, 0, "stopping")
                    continue
                self.handle(received)
                done += 1
            idle_since = time.monotonic()
        self.shutdown()
        return done

    def shutdown(self) -> None:
        self.lifecycle.protect(False)
        if self.notice is not None:
            self.lifecycle.complete_terminating()
        self._notify_pool.shutdown(wait=True)
        self._emit_busy(force=True)

    def healthy(self, stall_seconds: float = 120.0) -> bool:
        """Health probe: booting, running a job within its time limit, or the loop went round recently."""
        now = time.monotonic()
        job = self.current
        if job is not None:
            return now - job.started < self.config.max_job_seconds + stall_seconds
        if self.last_tick is None:
            return True  # boot has its own timeouts (backend readiness) and fails loudly
        return now - self.last_tick < stall_seconds + self.config.queue.wait_time_seconds

    def _ensure_backend(self) -> None:
        if self._backend_ok:
            return
        try:
            self.backend.wait_ready(self.config.backend_ready_timeout_seconds)
            self._backend_ok = True
        except BackendUnavailable as exc:
            log.error("backend still unavailable: %s", exc)
            self._stopping.wait(5.0)

    # -- one job ---------------------------------------------------------------------------------------
    def handle(self, received: ReceivedJob) -> str:
        picked = time.time()
        t0 = time.monotonic()
        message = received.message
        job_id, attempt = message.job_id, received.receive_count
        ctx = JobContext(job_id=job_id, spec=dict(message.job), deadline=t0 + self.config.max_job_seconds)
        job = RunningJob(received, ctx)
        timings = {"queue_wait_ms": round(max(0.0, picked - message.enqueued_at) * 1000, 1)}
        backend_s = [0.0]
        try:
            outcome = self._attempt(job, attempt, timings, backend_s)
        except (BackendUnavailable, BackendError, ModelCacheError, StoreUnavailableError, QueueError, OSError,
                ValueError) as exc:
            outcome = self._attempt_failed(job, attempt, exc, timings)
        finally:
            self.current = None
        elapsed = time.monotonic() - t0
        if outcome == "succeeded":
            self._ewma_job_s = elapsed if self._ewma_job_s is None else 0.8 * self._ewma_job_s + 0.2 * elapsed
        self._busy_s += backend_s[0]
        self.stats.append(JobStat(job_id, outcome, elapsed, backend_s[0]))
        log.info("job %s %s", job_id, outcome, extra={"job_id": job_id, "attempt": attempt, "outcome": outcome,
                                                     "timings": timings})
        return outcome

    def _attempt(self, job: RunningJob, attempt: int, timings: dict[str, float], backend_s: list[float]) -> str:
        ctx, received = job.ctx, job.received
        if attempt > self.config.queue.max_receive_count:
            return self._give_up(job, attempt, "attempts-exhausted",
                                 f"received {attempt} times, limit {self.config.queue.max_receive_count}", timings)
        try:
            record = self.store.mark_running(ctx.job_id, self.worker_id, attempt)
        except JobNotFoundError:
            log.error("job %s has no record; dropping its message", ctx.job_id)
            self.consumer.ack(received)
            return "orphaned"
        if record is None:  # final already (a redelivery) or canceled while queued
            self.consumer.ack(received)
            self._notify(ctx.job_id, "completed")
            return "skipped"
        self.current = job
        self.lifecycle.protect(True)
        self._notify(ctx.job_id, "start")
        if ctx.inputs.get("seed", 0) is None:
            ctx.spec["inputs"] = {**ctx.inputs, "seed": random.randrange(2**32)}
        with _JobGuard(self, job):
            try:
                result, cache_hit = self._phases(job, timings, backend_s)
            except JobInterrupted:
                return self._interrupted(job, timings)
            except (JobInputError, ModelUnavailable) as exc:
                return self._give_up(job, attempt, "invalid-input", str(exc), timings)
        return self._succeed(job, result, timings, cache_hit)

    def _checkpoint(self, job: RunningJob) -> None:
        """Between phases: stop when interrupted or when a cancel was requested."""
        if job.reason is None and self.store.is_cancel_requested(job.ctx.job_id):
            job.reason = "cancel"
        if job.reason is not None:
            raise JobInterrupted(f"job {job.ctx.job_id} interrupted ({job.reason})")

    def _phases(self, job: RunningJob, timings: dict[str, float], backend_s: list[float]) -> tuple[Any, bool | None]:
        ctx = job.ctx
        self._checkpoint(job)
        ctx.input_images = self.fetcher.fetch_all(ctx.spec)
        t = time.monotonic()
        cache_hit: bool | None = None
        with contextlib.ExitStack() as stack:
            if self.model_cache is not None and ctx.model and self.backend.name != "test-pattern":
                cached = stack.enter_context(self.model_cache.use(ctx.model))
                cache_hit = cached.hit
                ctx.model_path = cached.path
                self.metrics.count(m.MODEL_CACHE_HITS if cache_hit else m.MODEL_CACHE_MISSES, model=ctx.model,
                                   job_id=ctx.job_id, load_ms=cached.load_ms)
            self.backend.load_model(ctx.model or "", ctx.model_path)
            timings["model_load_ms"] = _ms(t)
            self._checkpoint(job)
            t = time.monotonic()
            try:
                result = self.backend.run(ctx)
            except BackendUnavailable:
                self._backend_ok = False
                raise
            finally:
                backend_s[0] = time.monotonic() - t
                timings["inference_ms"] = _ms(t)
        self._checkpoint(job)
        t = time.monotonic()
        uploaded = self.uploader.upload(ctx.job_id, result.outputs, result.metadata)
        timings["upload_ms"] = _ms(t)
        result.metadata["uploaded"] = uploaded
        return result, cache_hit

    def _succeed(self, job: RunningJob, result: Any, timings: dict[str, float], cache_hit: bool | None) -> str:
        ctx = job.ctx
        timings["total_ms"] = _ms(job.started)
        generator = result.metadata.get("generator") or self.backend.name
        outputs = [{"url": o["url"], "content_type": o["content_type"], "generator": generator}
                   for o in result.metadata["uploaded"]]
        written = self.store.mark_succeeded(ctx.job_id, outputs, timings)
        self.consumer.ack(job.received)
        values = {m.QUEUE_WAIT: timings["queue_wait_ms"], m.MODEL_LOAD_TIME: timings["model_load_ms"],
                  m.INFERENCE_TIME: timings["inference_ms"], m.UPLOAD_TIME: timings["upload_ms"],
                  m.JOB_LATENCY: timings["queue_wait_ms"] + timings["total_ms"], m.JOBS_SUCCEEDED: 1}
        self.metrics.emit(values, {"job_id": ctx.job_id, "worker_id": self.worker_id, "model": ctx.model,
                                   "attempt": job.received.receive_count, "recorded": written,
                                   "model_cache_hit": cache_hit})
        if written:
            self._notify(ctx.job_id, "completed")
        return "succeeded"

    def _interrupted(self, job: RunningJob, timings: dict[str, float]) -> str:
        if job.reason == "cancel":
            self.store.mark_canceled(job.ctx.job_id)
            self.consumer.ack(job.received)
            self._notify(job.ctx.job_id, "completed")
            return "canceled"
        self._release(job.received, 0, job.reason or "interrupted")
        self.metrics.count(m.JOBS_HANDED_BACK, job_id=job.ctx.job_id, reason=job.reason)
        return "handed-back"

    def _give_up(self, job: RunningJob, attempt: int, code: str, message: str, timings: dict[str, float]) -> str:
        """Record the job failed for good; its message is acknowledged (input error) or dead-lettered."""
        ctx = job.ctx
        timings["total_ms"] = _ms(job.started)
        written = self.store.mark_failed(ctx.job_id, {"code": code, "message": message[:1000]}, timings)
        if code == "invalid-input":
            self.consumer.ack(job.received)
        else:
            dead_letter = getattr(self.consumer, "dead_letter", None)
            if dead_letter is not None:
                dead_letter(job.received, message)
            else:
                self._release(job.received, 0, "dead-letter")
        self.metrics.emit({m.JOBS_FAILED: 1}, {"job_id": ctx.job_id, "worker_id": self.worker_id, "code": code,
                                                "attempt": attempt})
        if written:
            self._notify(ctx.job_id, "completed")
        log.warning("job %s failed for good (%s): %s", ctx.job_id, code, message)
        return "failed"

    def _attempt_failed(self, job: RunningJob, attempt: int, exc: Exception, timings: dict[str, float]) -> str:
        ctx = job.ctx
        error = f"{type(exc).__name__}: {exc}"
        log.warning("job %s attempt %d failed: %s", ctx.job_id, attempt, error)
        self.metrics.count(m.JOB_ERRORS, job_id=ctx.job_id, attempt=attempt, error=error[:300])
        if isinstance(exc, BackendUnavailable):
            self._backend_ok = False
        try:
            self.store.record_attempt_error(ctx.job_id, attempt, {"code": "attempt-failed", "message": error[:1000]})
            if attempt >= self.config.queue.max_receive_count and not isinstance(exc, StoreUnavailableError):
                return self._give_up(job, attempt, "attempts-exhausted", error, timings)
        except (StoreUnavailableError, QueueError) as store_exc:
            log.error("could not record the failure of %s: %s", ctx.job_id, store_exc)
        self._release(job.received, self.config.retry_delay_seconds, "retry")
        return "retrying"

    def _release(self, received: ReceivedJob, delay: int, why: str) -> None:
        try:
            self.consumer.release(received, delay)
            log.info("job %s handed back (%s, visible in %ss)", received.message.job_id, why, delay)
        except QueueError as exc:
            log.error("hand back of %s failed (its lease will run out instead): %s", received.message.job_id, exc)

    # -- side effects ----------------------------------------------------------------------------------
    def _notify(self, job_id: str, event: str) -> None:
        if self.webhooks is None:
            return

        def send() -> None:
            try:
                record = self.store.get(job_id)
                if record is not None:
                    self.webhooks.notify(record, event)
            except (StoreUnavailableError, ValueError) as exc:
                log.warning("webhook %s for %s not sent: %s", event, job_id, exc)

        self._notify_pool.submit(send)

    def _emit_busy(self, force: bool = False) -> None:
        window = time.monotonic() - self._busy_since
        if window < 60 and not force:
            return
        if window > 0:
            self.metrics.emit({m.BACKEND_BUSY: min(100.0, 100.0 * self._busy_s / window)},
                              {"worker_id": self.worker_id})
        self._busy_s, self._busy_since = 0.0, time.monotonic()


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)


def _uptime_ms() -> float:
    try:
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0]) * 1000
    except (OSError, ValueError, IndexError):
        return 0.0
