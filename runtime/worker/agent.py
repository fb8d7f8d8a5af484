"""The agent's main loop: take a job, run it on the backend, hand its settling to the settle lane.

Pipelined, one job on the backend at a time (one accelerator per instance)::

    prefetch thread   receive N+1, fetch its inputs, make its model local      (runtime.worker.prefetch)
    main loop         claim N (start_attempt) -> inputs -> model -> backend.run (runtime.worker.job_runner)
    settle lane       upload, record, acknowledge, metrics of N-1               (runtime.worker.settler)

A prefetched message is only received: its visibility is renewed while it waits, its attempt is started in
the record when the job is about to run, and a stop, drain or spot notice hands it back at once. Per claimed
job a lease guard (runtime.worker.guard) renews the message and the record's lease and watches for cancel
requests and lost leases until the job is settled. What a termination notice does to the running job is
the drain policy's (runtime.worker.drain). A consumer that cannot hold a second message while one is
unsettled (Kafka: ordered offset commits) runs serially: receive, run, settle, receive. Webhooks are not
sent by the agent: the webhook dispatcher derives them from the job table's stream.

Attempts are counted in the job record at the claim (``start_attempt``), not in the queue's receive count,
and every write of an attempt is fenced on its lease (runtime.jobs.attempts). Errors map to an outcome by
cause in one table (runtime.worker.failures); no exception escapes the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from runtime import metric_names as m
from runtime.agent_config import AgentConfig
from runtime.backends.base import Backend, BackendError, BackendUnavailable
from runtime.model_cache import ModelCache
from runtime.queues.base import JobQueueConsumer, QueueError, ReceivedJob
from runtime.worker.drain import DrainPolicy
from runtime.worker.guard import LeaseGuard
from runtime.worker.inputs import ImageFetcher
from runtime.worker.job_runner import JobRunner, RunningJob
from runtime.worker.lifecycle import REBALANCE, SPOT, Lifecycle, Notice
from runtime.worker.metrics import Metrics
from runtime.worker.outputs import OutputUploader
from runtime.worker.pipeline import Pipeline
from runtime.worker.prefetch import Prepared
from runtime.worker.settler import Settler

INFRA_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 20.0)  # pause after consecutive infrastructure failures

log = logging.getLogger(__name__)


@dataclass
class JobStat:
    job_id: str
    outcome: str
    handle_s: float  # pick-up to acknowledged
    backend_s: float  # time inside backend.run
    timings: dict[str, float] | None = None  # per phase, ms (receive, mark running, inputs, model, run, ...)
    run_span: tuple[float, float] | None = None  # monotonic start and end of backend.run


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
        self.drain = DrainPolicy(config.lifecycle.drain_margin_seconds, interrupt=self.interrupt,
                                 current=lambda: self.current)
        self.notice: Notice | None = None
        self.stats: list[JobStat] = []
        self.current: RunningJob | None = None  # the job on the backend (not the one being settled)
        self.batch: tuple[RunningJob, ...] = ()  # all jobs of the batch on the backend (runtime.worker.batching)
        self._pipeline: Pipeline | None = None
        self._stopping = threading.Event()
        self._stop_requested = False
        self._lock = threading.Lock()
        self._backend_ok = True
        self._infra_failures = 0
        self._pause_s = INFRA_BACKOFF_S[0]
        self._pause_next = False
        self._busy_s = 0.0
        self._busy_since = time.monotonic()
        self.rebalance: Notice | None = None  # a replacement is on its way; keep working until told to drain
        self.last_tick: float | None = None  # main loop progress (health probe); None until the loop runs
        self.loaded_model: str | None = None  # the model the backend holds (model affinity, switch metrics)

    @property
    def pipelined(self) -> bool:
        return self.config.prefetch_jobs > 0 and getattr(self.consumer, "supports_prefetch", True)

    # -- control (called from signal handlers and the lifecycle watcher) ------------------------------
    def stop(self) -> None:
        """Stop pulling, hand prefetched messages and a running job back at once (SIGTERM, systemd stop)."""
        self._stop_requested = True
        self._stopping.set()
        self._hand_back_prefetched()
        job = self.current
        if job is not None:
            self.interrupt(job, "stop")

    def on_notice(self, notice: Notice) -> None:
        """Spot notice or terminating state: drain (runtime.worker.drain). Rebalance: keep working."""
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
        self._hand_back_prefetched()
        job = self.current
        if job is not None:
            self.drain.apply(job, notice)

    def _hand_back_prefetched(self) -> None:
        """On its own thread: a signal handler must not take the prefetcher's lock or call AWS."""
        pipeline = self._pipeline
        if pipeline is not None:
            threading.Thread(target=pipeline.hand_back, name="hand-back", daemon=True).start()

    def interrupt(self, job: RunningJob, reason: str) -> None:
        with self._lock:
            if job.reason is None or reason in ("cancel", "lost-lease"):
                job.reason = reason
        if self.current is not job and job not in self.batch:
            return  # being settled: the backend runs another job now; the settle's checkpoint stops it
        try:
            self.backend.interrupt(job.ctx)
        except BackendError as exc:
            log.warning("interrupting %s: %s", job.ctx.job_id, exc)
        if job is self.current and reason in ("stop", "drain"):  # one backend call: the batch goes back whole
            for other in self.batch:
                if other is not job:
                    self.interrupt(other, reason)

    # -- boot ------------------------------------------------------------------------------------------
    def boot(self) -> None:
        """Preload hot models, warm the backend up, complete the launching lifecycle action (runtime.worker.boot)."""
        from runtime.worker.boot import boot

        boot(self)

    # -- main loop -------------------------------------------------------------------------------------
    def run(self, max_jobs: int | None = None, idle_exit_seconds: float | None = None) -> int:
        """Pull and run jobs until stopped (or ``max_jobs`` / ``idle_exit_seconds`` for tests and benches)."""
        if self.pipelined:
            pipeline = Pipeline(self, max_jobs)
            self._pipeline = pipeline
            done = pipeline.run(max_jobs, idle_exit_seconds)
        else:
            done = self._run_serial(max_jobs, idle_exit_seconds)
        self.shutdown()
        return done

    def _run_serial(self, max_jobs: int | None, idle_exit_seconds: float | None) -> int:
        """Receive, run, settle, receive: for consumers that hold one message at a time (Kafka)."""
        done, idle_since = 0, time.monotonic()
        wait = self.config.queue.wait_time_seconds
        while not self._stopping.is_set() and (max_jobs is None or done < max_jobs):
            self.last_tick = time.monotonic()
            self._ensure_backend()
            t = time.monotonic()
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
            receive_ms = round((time.monotonic() - t) * 1000, 1)
            for received in jobs:
                if self._stopping.is_set():
                    self.runner.release(received, 0, "stopping")
                    continue
                self.handle(received, prepared=Prepared(received, receive_ms=receive_ms))
                self.pause_if_troubled()
                done += 1
            idle_since = time.monotonic()
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
    def handle(self, received: ReceivedJob, prepared: Prepared | None = None, settler: Settler | None = None) -> str:
        """Claim, run and settle one received job (settled on ``settler`` when given, while the caller goes on).
        Never raises (invariant 5). Returns the outcome, or "settling" when the settle lane has it."""
        claimed = self.claim(received, prepared)
        return claimed if isinstance(claimed, str) else self.execute(claimed, settler)

    def claim(self, received: ReceivedJob, prepared: Prepared | None, track_run: bool = False) -> RunningJob | str:
        """Start the attempt in the record and its lease guard; an outcome when the job must not run."""
        t0 = time.monotonic()
        job_id = received.message.job_id
        timings = {"queue_wait_ms": round(max(0.0, time.time() - received.message.enqueued_at) * 1000, 1)}
        if prepared is not None:
            timings["receive_ms"] = prepared.receive_ms
        try:
            job = self.runner.claim(received, timings, track_run, prepared.job if prepared is not None else None)
            if isinstance(job, str):
                return self._record(job_id, job, t0, 0.0, timings)
            job.picked, job.timings, job.prepared = t0, timings, prepared
            job.guard = LeaseGuard(
                consumer=self.consumer, store=self.store, received=job.received, job_id=job_id,
                lease=job.attempt.lease, lease_seconds=self.config.queue.visibility_timeout_seconds,
                poll_seconds=self.config.cancel_poll_seconds, on_cancel=lambda: self.interrupt(job, "cancel"),
                on_lost=lambda why: self._lost(job, why), on_beat=self._beat_lifecycle).start()
            return job
        except Exception:  # the runner settles every failure; this is the last line of defence
            log.exception("job %s: unexpected error outside an attempt; handing the message back", job_id)
            self.runner.release(received, self.config.retry_delay_seconds, "unexpected")
            return self._record(job_id, "unsettled", t0, 0.0, timings)

    def execute(self, job: RunningJob, settler: Settler | None = None, on_run: Any = None, on_ran: Any = None) -> str:
        """Run a claimed job on the backend, then settle it (here or on ``settler``); never raises.
        ``on_run`` is called right before backend.run, ``on_ran`` when the backend answered."""
        if self._stopping.is_set():  # claimed ahead of a stop or a notice: hand it back before it starts
            self.interrupt(job, "stop" if self._stop_requested else "drain")
        job.started = time.monotonic()
        self.current = job
        job.switched = self._note_model(job.ctx.model)
        self.lifecycle.protect(True)
        backend_s, timings = [0.0], job.timings
        try:
            result, cache_hit = self.runner.run_backend(job, timings, backend_s, job.prepared, on_run)
        except Exception as exc:  # noqa: BLE001 - every cause is mapped in runtime.worker.failures
            try:
                outcome = self.runner.settle_exception(job, exc, timings)
            except Exception:  # last line of defence: the lease runs out and the job is retried
                log.exception("job %s: settling failed", job.ctx.job_id)
                outcome = "unsettled"
            finally:
                self.current = None
                job.guard.stop()
            return self._record(job.ctx.job_id, outcome, job.picked, backend_s[0], timings, job)
        self.current = None  # the backend is free: the next job may start while this one settles
        if on_ran is not None:
            on_ran(job)

        def settle() -> str:
            try:
                outcome = self.runner.finish(job, result, timings, cache_hit)
            except Exception:  # last line of defence: the lease runs out and the job is retried
                log.exception("job %s: settling failed", job.ctx.job_id)
                outcome = "unsettled"
            finally:
                job.guard.stop()  # the message and the record's lease stay renewed until the job is settled
            return self._record(job.ctx.job_id, outcome, job.picked, backend_s[0], timings, job)

        if settler is None:
            return settle()
        settler.submit(settle)
        return "settling"

    def _record(self, job_id: str, outcome: str, t0: float, backend_s: float, timings: dict[str, float],
                job: RunningJob | None = None) -> str:
        elapsed = time.monotonic() - t0
        if outcome == "succeeded":
            self.drain.observe(elapsed)
        if outcome in ("deferred", "unsettled"):
            self._pause_next = True  # AWS or the disk is in trouble: the loop pauses before the next job
        else:
            self._infra_failures = 0
        self._busy_s += backend_s
        self.stats.append(JobStat(job_id, outcome, elapsed, backend_s, dict(timings),
                                  job.run_span if job is not None else None))
        if job is not None and job.switched and "model_load_ms" in timings:
            self.metrics.emit({m.MODEL_SWITCH_TIME: timings["model_load_ms"]}, {"worker_id": self.worker_id,
                                                                                "model": job.ctx.model})
        if job is not None:
            log.info("job %s %s", job_id, outcome, extra={"job_id": job_id, "attempt": job.attempt.number,
                                                         "lease": job.attempt.lease, "outcome": outcome,
                                                         "timings": timings})
        return outcome

    def pause_if_troubled(self) -> None:
        if self._pause_next:
            self._pause_next = False
            self._stopping.wait(self._pause_s)

    def _note_model(self, model: str | None) -> bool:
        """Model affinity hook: tell the consumer which model the backend loads now; count a switch."""
        if not model:
            return False
        previous, self.loaded_model = self.loaded_model, model
        note = getattr(self.consumer, "note_loaded", None)  # runtime.queues.affinity.AffinityConsumer
        if note is not None:
            note(model)
        if previous is None or previous == model:
            return False
        self.metrics.count(m.MODEL_SWITCHES, worker_id=self.worker_id, model=model, previous=previous)
        return True

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

