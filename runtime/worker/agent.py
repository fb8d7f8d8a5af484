"""The agent's main loop: claim a job, run it through the backend, settle it (runtime.worker.job_runner).

One job at a time (one accelerator per instance). Threads: the main loop; per running job a lease
guard (runtime.worker.guard) that renews the queue message and the record's lease and watches for
cancel requests and lost leases; the lifecycle watcher (lifecycle.py). Webhooks are not sent by the
agent: the webhook dispatcher derives them from the job table's stream.

Attempts are counted in the job record at pick-up (``start_attempt``), not in the queue's receive
count, and every write of an attempt is fenced on its lease (runtime.jobs.attempts). Errors map to an
outcome by cause in one table (runtime.worker.failures); no exception escapes the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from runtime import metric_names as m
from runtime.agent_config import AgentConfig
from runtime.backends.base import Backend, BackendError, BackendUnavailable, JobContext
from runtime.jobs.attempts import EXHAUSTED, MISSING
from runtime.jobs.errors import JobNotFoundError, StoreUnavailableError
from runtime.model_cache import ModelCache, ModelCacheError
from runtime.queues.base import JobQueueConsumer, QueueError, ReceivedJob
from runtime.worker.guard import LeaseGuard
from runtime.worker.inputs import ImageFetcher
from runtime.worker.job_runner import JobRunner, RunningJob
from runtime.worker.lifecycle import REBALANCE, SPOT, Lifecycle, Notice
from runtime.worker.metrics import Metrics
from runtime.worker.outputs import OutputUploader

INFRA_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 20.0)  # pause after consecutive infrastructure failures

log = logging.getLogger(__name__)


@dataclass
class JobStat:
    job_id: str
    outcome: str
    handle_s: float  # pick-up to acknowledged
    backend_s: float  # time inside backend.run


class Agent:
    def __init__(self, config: AgentConfig, *, consumer: JobQueueConsumer, store: Any, backend: Backend,
                 uploader: OutputUploader, metrics: Metrics, lifecycle: Lifecycle, worker_id: str,
                 model_cache: ModelCache | None = None, fetcher: ImageFetcher | None = None) -> None:
        self.config = config
        self.consumer = consumer
        self.store = store
        self.backend = backend
        self.uploader = uploader
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.worker_id = worker_id
        self.model_cache = model_cache
        self.fetcher = fetcher or ImageFetcher(allow_loopback=config.allow_loopback_urls)
        self.runner = JobRunner(self)
        self.notice: Notice | None = None
        self.stats: list[JobStat] = []
        self.current: RunningJob | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._backend_ok = True
        self._infra_failures = 0
        self._pause_s = INFRA_BACKOFF_S[0]
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
            if job.reason is None or reason in ("cancel", "lost-lease"):
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
        warm = None  # the first hot model: the backend loads (and compiles) it before the instance takes jobs
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
            warm = warm or cached
        self.backend.wait_ready(self.config.backend_ready_timeout_seconds)
        self._warm_up(warm)
        log.info("backend ready", extra={"check": self.backend.check()})
        self.lifecycle.complete_launching()
        self.metrics.emit({m.BOOT_TO_READY: _uptime_ms()}, {"worker_id": self.worker_id})

    def _warm_up(self, cached: Any) -> None:
        """A warm-up that fails is a boot warning: jobs then load and compile on demand."""
        if cached is None:
            return
        try:
            report = self.backend.warm_up(cached.model_id, cached.path)
        except BackendError as exc:
            log.warning("warm-up of %s failed: %s", cached.model_id, exc, extra={"model": cached.model_id})
            self.metrics.count(m.BOOT_WARNINGS, what="warm-up", model=cached.model_id, error=str(exc)[:300])
            return
        if report:
            log.info("backend warmed up", extra={"warm_up": report})

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
                    self.runner.release(received, 0, "stopping")
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

    def backend_lost(self) -> None:
        self._backend_ok = False

    def infrastructure_trouble(self) -> float:
        """Note one more infrastructure failure in a row; the loop pauses for the returned seconds."""
        delay = INFRA_BACKOFF_S[min(self._infra_failures, len(INFRA_BACKOFF_S) - 1)]
        self._infra_failures += 1
        self._pause_s = delay
        return delay

    # -- one job ---------------------------------------------------------------------------------------
    def handle(self, received: ReceivedJob) -> str:
        """Claim, run and settle one received job; never raises (invariant 5)."""
        t0 = time.monotonic()
        job_id = received.message.job_id
        backend_s = [0.0]
        try:
            outcome = self._handle(received, backend_s)
        except Exception:  # the runner settles every failure; this is the last line of defence
            log.exception("job %s: unexpected error outside an attempt; handing the message back", job_id)
            self.runner.release(received, self.config.retry_delay_seconds, "unexpected")
            outcome = "unsettled"
        finally:
            self.current = None
        elapsed = time.monotonic() - t0
        if outcome == "succeeded":
            self._ewma_job_s = elapsed if self._ewma_job_s is None else 0.8 * self._ewma_job_s + 0.2 * elapsed
        if outcome in ("deferred", "unsettled"):
            self._stopping.wait(self._pause_s)  # AWS or the disk is in trouble: do not hammer it
        else:
            self._infra_failures = 0
        self._busy_s += backend_s[0]
        self.stats.append(JobStat(job_id, outcome, elapsed, backend_s[0]))
        return outcome

    def _handle(self, received: ReceivedJob, backend_s: list[float]) -> str:
        message = received.message
        job_id = message.job_id
        timings = {"queue_wait_ms": round(max(0.0, time.time() - message.enqueued_at) * 1000, 1)}
        lease_s = self.config.queue.visibility_timeout_seconds
        try:
            attempt = self.store.start_attempt(job_id, self.worker_id, self.config.queue.max_receive_count, lease_s)
        except JobNotFoundError:
            log.error("job %s has no record; dropping its message", job_id)
            self.runner._ack(received)
            return "orphaned"
        except StoreUnavailableError as exc:
            log.error("job %s: could not claim it (%s); handing it back", job_id, exc)
            self.runner.release(received, self.infrastructure_trouble(), "store unavailable")
            return "deferred"
        if not attempt.started:  # final already (a redelivery), canceled while queued, or out of attempts
            self.runner._ack(received)
            if attempt.outcome == EXHAUSTED:
                self.metrics.emit({m.JOBS_FAILED: 1}, {"job_id": job_id, "worker_id": self.worker_id,
                                                        "code": "attempts-exhausted"})
            return "skipped" if attempt.outcome != MISSING else "orphaned"
        ctx = JobContext(job_id=job_id, spec=dict(message.job),
                         deadline=time.monotonic() + self.config.max_job_seconds)
        job = RunningJob(received, ctx, attempt)
        self.current = job
        self.lifecycle.protect(True)
        guard = LeaseGuard(consumer=self.consumer, store=self.store, received=received, job_id=job_id,
                           lease=attempt.lease, lease_seconds=lease_s, poll_seconds=self.config.cancel_poll_seconds,
                           on_cancel=lambda: self.interrupt(job, "cancel"),
                           on_lost=lambda why: self._lost(job, why), on_beat=self._beat_lifecycle)
        try:
            with guard:
                result, cache_hit = self.runner.run_phases(job, timings, backend_s)
        except Exception as exc:  # noqa: BLE001 - every cause is mapped in runtime.worker.failures
            outcome = self.runner.settle_exception(job, exc, timings)
        else:
            try:
                outcome = self.runner.settle_success(job, result, timings, cache_hit)
            except Exception as exc:  # noqa: BLE001 - e.g. the store failed on the final write
                outcome = self.runner.settle_exception(job, exc, timings)
        log.info("job %s %s", job_id, outcome, extra={"job_id": job_id, "attempt": attempt.number,
                                                     "lease": attempt.lease, "outcome": outcome, "timings": timings})
        return outcome

    def _lost(self, job: RunningJob, why: str) -> None:
        log.warning("job %s: lease lost (%s); stopping the attempt", job.ctx.job_id, why)
        self.interrupt(job, "lost-lease")

    def _beat_lifecycle(self) -> None:
        if self.notice is not None:
            self.lifecycle.heartbeat_terminating()

    def _emit_busy(self, force: bool = False) -> None:
        window = time.monotonic() - self._busy_since
        if window < 60 and not force:
            return
        if window > 0:
            self.metrics.emit({m.BACKEND_BUSY: min(100.0, 100.0 * self._busy_s / window)},
                              {"worker_id": self.worker_id})
        self._busy_s, self._busy_since = 0.0, time.monotonic()


def _uptime_ms() -> float:
    try:
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0]) * 1000
    except (OSError, ValueError, IndexError):
        return 0.0
