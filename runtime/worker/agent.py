"""The worker agent: its parts wired together, and the controls the entry point and the lifecycle watcher use.

Pipelined, one call on the backend at a time (one accelerator per instance)::

    prefetch thread   receive N+1, fetch its inputs, make its model local      (runtime.worker.prefetch)
    main loop         claim N -> execute N (inputs, model, backend call)       (runtime.worker.pipeline,
                                                                               .claims, .execution)
    settle lane       upload, record, acknowledge, metrics of N-1               (runtime.worker.settler,
                                                                               .settlement)

The parts take narrow collaborators, never the agent: a ``StopSignal`` (stop or drain), an ``InfraBackoff``,
a ``BackendSupervisor`` (what is on the backend, interrupting it, its model and readiness), a ``JobRecorder``
(stats, busy fraction), ``MessageActions`` (ack, hand back, dead-letter), a ``Claimer``, a ``Settlement`` and
one ``Executor`` that runs every job, alone or batched (runtime.worker.batching collects batches).

A prefetched message is only received: its visibility is renewed while it waits, its attempt is started in
the record when the job is about to run, and a stop, drain or spot notice hands it back at once. Per claimed
job a lease guard (runtime.worker.guard) renews the message and the record's lease and watches for cancel
requests and lost leases until the job is settled. What a termination notice does to the running job is
the drain policy's (runtime.worker.drain). A consumer that cannot hold a second message while one is
unsettled (Kafka: ordered offset commits) runs serially (runtime.worker.serial_loop). Webhooks are not
sent by the agent: the webhook dispatcher derives them from the job table's stream.

Attempts are counted in the job record at the claim (``start_attempt``), not in the queue's receive count,
and every write of an attempt is fenced on its lease (runtime.jobs.attempts). Errors map to an outcome by
cause in one table (runtime.worker.failures); no exception escapes the loop.
"""

from __future__ import annotations

import logging
import threading
import time

from runtime import metric_names as m
from runtime.agent_config import AgentConfig
from runtime.backends.base import CATALOG, Backend
from runtime.jobs.extra_models import WorkflowModels
from runtime.jobs.spend import TenantSpend
from runtime.jobs.store import JobStore
from runtime.model_cache import ModelCache
from runtime.queues.base import JobQueueConsumer
from runtime.worker.attempt_cost import AttemptCoster
from runtime.worker.backend_restart import command_restarter
from runtime.worker.backend_supervisor import BackendSupervisor
from runtime.worker.backoff import InfraBackoff
from runtime.worker.batching import Batcher, batch_size_for
from runtime.worker.boot import boot, uptime_ms
from runtime.worker.checkpoint import Checkpoint
from runtime.worker.claims import Claimer
from runtime.worker.drain import DrainPolicy
from runtime.worker.execution import Executor
from runtime.worker.inputs import ImageFetcher, read_job
from runtime.worker.lifecycle import REBALANCE, SPOT, Lifecycle, Notice
from runtime.worker.messages import MessageActions
from runtime.worker.metrics import Metrics
from runtime.worker.outcomes import StopReason
from runtime.worker.outputs import OutputUploader
from runtime.worker.pipeline import Pipeline, PipelineSettings
from runtime.worker.prefetch import Prefetcher
from runtime.worker.prices import PriceSource, instance_facts
from runtime.worker.progress_reporter import ProgressReporter
from runtime.worker.recorder import JobRecorder, JobStat
from runtime.worker.running_job import RunningJob
from runtime.worker.serial_loop import SerialLoop
from runtime.worker.settlement import Settlement
from runtime.worker.stop_signal import StopSignal

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: AgentConfig, *, consumer: JobQueueConsumer, store: JobStore, backend: Backend,
                 uploader: OutputUploader, metrics: Metrics, lifecycle: Lifecycle, worker_id: str,
                 model_cache: ModelCache | None = None, fetcher: ImageFetcher | None = None,
                 workflow_models: WorkflowModels | None = None,
                 progress: ProgressReporter | None = None,
                 prices: PriceSource | None = None) -> None:
        self.config = config
        self.workflow_models = workflow_models  # comfyui-workflow loader files -> store ids (issue 41)
        self.consumer, self.store, self.backend, self.uploader = consumer, store, backend, uploader
        self.metrics, self.lifecycle, self.worker_id, self.model_cache = metrics, lifecycle, worker_id, model_cache
        self.fetcher = fetcher or ImageFetcher(allow_loopback=config.allow_loopback_urls)
        queue_cfg = config.queue
        self.signal = StopSignal()
        self.backoff = InfraBackoff(self.signal)
        self.supervisor = BackendSupervisor(
            backend, metrics=metrics, worker_id=worker_id, ready_timeout_s=config.backend_ready_timeout_seconds,
            stop=self.signal, on_model=consumer.note_loaded,
            restart=command_restarter(config.backend_restart_command, config.backend_restart_timeout_seconds),
            restart_timeout_s=config.backend_restart_timeout_seconds, on_unrecoverable=lifecycle.mark_unhealthy)
        self.drain = DrainPolicy(config.lifecycle.drain_margin_seconds, interrupt=self.supervisor.interrupt,
                                 current=lambda: self.supervisor.current)
        p = config.pricing  # without a source (tests): the config's facts and table, no IMDS, no EC2
        self.prices = prices or PriceSource(instance_facts(None, p.instance_type, p.purchase_option),
                                            on_demand_hourly=p.on_demand_hourly, table_source=p.source,
                                            spot_discount=p.spot_discount)
        self.recorder = JobRecorder(metrics=metrics, worker_id=worker_id, backoff=self.backoff,
                                    on_success=self.drain.observe, price=self.prices.current)
        self.messages = MessageActions(consumer)
        checkpoint = Checkpoint(store)
        self.claimer = Claimer(
            store=store, consumer=consumer, messages=self.messages, metrics=metrics, recorder=self.recorder,
            backoff=self.backoff, worker_id=worker_id, max_attempts=queue_cfg.max_receive_count,
            lease_seconds=queue_cfg.visibility_timeout_seconds, cancel_poll_seconds=config.cancel_poll_seconds,
            max_job_seconds=config.max_job_seconds, retry_delay_seconds=config.retry_delay_seconds,
            allow_loopback=config.allow_loopback_urls, interrupt=self.supervisor.interrupt,
            on_beat=self._beat_lifecycle, task_max_job_seconds=config.task_max_job_seconds,
            served_tasks=CATALOG[backend.name].tasks if backend.name in CATALOG else None)
        settlement = Settlement(
            store=store, messages=self.messages, uploader=uploader, metrics=metrics, backoff=self.backoff,
            checkpoint=checkpoint, worker_id=worker_id, generator=backend.name,
            max_attempts=queue_cfg.max_receive_count, retry_delay_seconds=config.retry_delay_seconds,
            progress=progress,
            coster=AttemptCoster(self.prices), spend=TenantSpend(store.table_name, store.client))
        self.progress = progress
        self.executor = Executor(supervisor=self.supervisor, settlement=settlement, recorder=self.recorder,
                                 checkpoint=checkpoint, lifecycle=lifecycle, metrics=metrics, worker_id=worker_id,
                                 stop=self.signal, fetcher=self.fetcher, model_cache=model_cache,
                                 workflow_models=workflow_models,
                                 progress=progress)
        self.notice: Notice | None = None
        self.rebalance: Notice | None = None  # a replacement is on its way; keep working until told to drain
        self.last_tick: float | None = None  # main loop progress (health probe); None until the loop runs
        self._pipeline: Pipeline | None = None

    @property
    def pipelined(self) -> bool:
        return self.config.prefetch_jobs > 0 and self.consumer.supports_prefetch

    @property
    def stats(self) -> list[JobStat]:
        return self.recorder.stats

    @property
    def current(self) -> RunningJob | None:
        """The job on the backend (not the ones being settled)."""
        return self.supervisor.current

    @property
    def loaded_model(self) -> str | None:
        return self.supervisor.loaded_model

    # -- control (called from signal handlers and the lifecycle watcher) ------------------------------
    def stop(self) -> None:
        """Stop pulling, hand prefetched messages and a running job back at once (SIGTERM, systemd stop)."""
        self.signal.stop()
        self._hand_back_prefetched()
        job = self.supervisor.current
        if job is not None:
            self.supervisor.interrupt(job, StopReason.STOP)

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
        self.signal.drain()
        self._hand_back_prefetched()
        job = self.supervisor.current
        if job is not None:
            self.drain.apply(job, notice)

    def _hand_back_prefetched(self) -> None:
        """On its own thread: a signal handler must not take the prefetcher's lock or call AWS."""
        pipeline = self._pipeline
        if pipeline is not None:
            threading.Thread(target=pipeline.hand_back, name="hand-back", daemon=True).start()

    # -- boot ------------------------------------------------------------------------------------------
    def boot(self) -> None:
        """Preload hot models, warm the backend up, complete the launching lifecycle action (runtime.worker.boot)."""
        boot(hot_models=self.config.hot_models, ready_timeout_s=self.config.backend_ready_timeout_seconds,
             model_cache=self.model_cache, backend=self.backend, lifecycle=self.lifecycle, metrics=self.metrics,
             worker_id=self.worker_id)
        self.recorder.emit_overhead("boot", uptime_ms() / 1000)  # instance start to ready: fleet overhead

    # -- main loop -------------------------------------------------------------------------------------
    def run(self, max_jobs: int | None = None, idle_exit_seconds: float | None = None) -> int:
        """Pull and run jobs until stopped (or ``max_jobs`` / ``idle_exit_seconds`` for tests and benches)."""
        if self.pipelined:
            pipeline = self._build_pipeline(max_jobs)
            self._pipeline = pipeline
            done = pipeline.run(max_jobs, idle_exit_seconds)
        else:
            done = SerialLoop(self.consumer, wait_seconds=self.config.queue.wait_time_seconds, claimer=self.claimer,
                              executor=self.executor, supervisor=self.supervisor, stop=self.signal,
                              backoff=self.backoff, lifecycle=self.lifecycle, recorder=self.recorder,
                              messages=self.messages, tick=self._tick).run(max_jobs, idle_exit_seconds)
        self.shutdown()
        return done

    def _build_pipeline(self, budget: int | None) -> Pipeline:
        cfg = self.config
        batch = batch_size_for(self.backend, cfg)  # dynamic batching: hold enough for a batch
        batcher = Batcher(self.backend, stop=self.signal, messages=self.messages, max_jobs=batch,
                          wait_s=cfg.batch_wait_ms / 1000) if batch > 1 else None
        cache = self.model_cache if self.backend.uses_model_files else None
        prefetcher = Prefetcher(self.consumer, capacity=max(cfg.prefetch_jobs, batch),
                                wait_seconds=cfg.queue.wait_time_seconds,
                                visibility_seconds=cfg.queue.visibility_timeout_seconds,
                                prepare_inputs=self.fetcher.fetch_all,
                                prepare_model=cache.ensure if cache is not None else None, budget=budget,
                                workflow_models=self.workflow_models,
                                read_job=lambda data: read_job(data, cfg.allow_loopback_urls))
        settings = PipelineSettings(claim_ahead=cfg.claim_ahead, overlap_settle=cfg.overlap_settle,
                                    wait_seconds=cfg.queue.wait_time_seconds)
        return Pipeline(settings, prefetcher=prefetcher, batcher=batcher, claimer=self.claimer,
                        executor=self.executor, supervisor=self.supervisor, stop=self.signal, backoff=self.backoff,
                        lifecycle=self.lifecycle, recorder=self.recorder, messages=self.messages, store=self.store,
                        tick=self._tick)

    def shutdown(self) -> None:
        self.lifecycle.protect(False)
        if self.notice is not None:
            self.lifecycle.complete_terminating()
        self.recorder.emit_busy(force=True)
        if self.progress is not None:
            self.progress.stop()

    def healthy(self, stall_seconds: float = 120.0) -> bool:
        """Health probe: booting, running a job within its time limit, or the loop went round recently."""
        if self.supervisor.unrecoverable is not None:
            return False  # the backend cannot be brought back: replace the instance
        now = time.monotonic()
        job = self.supervisor.current
        if job is not None:  # the time limit counts from when the backend started it; a restart may follow
            ctx = job.ctx
            limit = ctx.deadline or ctx.start_deadline or job.started + self.config.time_limit(ctx.task)
            return now < limit + self.config.backend_restart_timeout_seconds + stall_seconds
        if self.last_tick is None:
            return True  # boot has its own timeouts (backend readiness) and fails loudly
        return now - self.last_tick < stall_seconds + self.config.queue.wait_time_seconds

    def _tick(self) -> None:
        self.last_tick = time.monotonic()

    def _beat_lifecycle(self) -> None:
        if self.notice is not None:
            self.lifecycle.heartbeat_terminating()
