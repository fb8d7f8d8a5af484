"""The one way a claimed job runs: as a call of one or more jobs on the backend, then settled each.

A single job is a batch of one; the dynamic batching of runtime.worker.batching hands several compatible jobs
to the same path. Per call, in order::

    stop check      claimed ahead of a stop or a notice: every job is interrupted (handed back, uncounted)
    model switch    the backend's model noted (affinity hook, switch metric); scale-in protection on
    per job         seed, checkpoint, inputs (prefetched or fetched), model and extra model files (LoRAs...)
                    from the local cache, pinned until the call ends (runtime.worker.extra_models)
    model           backend.load_model once for the call; a checkpoint per job (canceled ones drop out)
    call            on_run (run markers, claim-ahead); backend.run (one job) or backend.run_batch (several);
                    a job whose batch call failed as a whole runs again alone, once; on_ran per job
    settle          each job by its own outcome (runtime.worker.settlement): with a settle lane, results
                    settle there while the next call runs, failures here before the next claim

Every job of a batch stays its own job (attempt, lease, outputs, record); what happens to a batch by cause is
drawn in runtime.worker.batching. Never raises: an error outside the backend call settles every job not run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from runtime import metric_names as m
from runtime.backends.base import BackendError, BackendResult, BackendUnavailable, JobInputError, JobInterrupted
from runtime.jobs.extra_models import WorkflowModels
from runtime.model_cache import ModelCache
from runtime.worker.backend_supervisor import BackendSupervisor
from runtime.worker.checkpoint import FRESH_S, Checkpoint
from runtime.worker.extra_models import pin_extra_models
from runtime.worker.inputs import ImageFetcher
from runtime.worker.lifecycle import Lifecycle
from runtime.worker.metrics import Metrics
from runtime.worker.outcomes import Outcome
from runtime.worker.progress_reporter import ProgressReporter
from runtime.worker.recorder import JobRecorder
from runtime.worker.running_job import RunningJob
from runtime.worker.settlement import Settlement
from runtime.worker.settler import Settler
from runtime.worker.stop_signal import StopSignal

log = logging.getLogger(__name__)

Answer = BackendResult | Exception  # what the backend call left for one job


class Executor:
    def __init__(self, *, supervisor: BackendSupervisor, settlement: Settlement, recorder: JobRecorder,
                 checkpoint: Checkpoint, lifecycle: Lifecycle, metrics: Metrics, worker_id: str, stop: StopSignal,
                 fetcher: ImageFetcher, model_cache: ModelCache | None,
                 workflow_models: WorkflowModels | None = None,
                 progress: ProgressReporter | None = None) -> None:
        self._progress = progress  # per-attempt progress sinks (issue 38); None: no events
        self._supervisor, self._settlement, self._recorder = supervisor, settlement, recorder
        self._checkpoint, self._lifecycle, self._metrics = checkpoint, lifecycle, metrics
        self._worker_id, self._stop, self._fetcher = worker_id, stop, fetcher
        self._cache = model_cache if supervisor.backend.uses_model_files else None
        self._workflow_models = workflow_models

    def execute(self, jobs: Sequence[RunningJob], settler: Settler | None = None,
                on_run: Callable[[], None] | None = None,
                on_ran: Callable[[RunningJob], None] | None = None) -> list[Outcome]:
        """Run claimed jobs as one backend call, then settle each (here, or on ``settler``). ``on_run`` is called
        right before the call, ``on_ran(job)`` for each job once the backend answered."""
        answers: dict[int, Answer] = {}
        busy_s = 0.0
        with self._supervisor.occupy(jobs):
            if self._stop.is_set():  # claimed ahead of a stop or a notice: hand them back before they start
                for job in jobs:
                    self._supervisor.interrupt(job, self._stop.reason)
            jobs[0].switched = self._supervisor.note_model(jobs[0].ctx.model)
            self._lifecycle.protect(True)
            if len(jobs) > 1:
                self._metrics.emit({m.BATCH_SIZE: len(jobs)}, {"worker_id": self._worker_id,
                                                               "model": jobs[0].ctx.model})
            try:
                with contextlib.ExitStack() as models:
                    ready = self._prepare_all(jobs, models, answers)
                    if ready:
                        busy_s = self._call(ready, answers, len(jobs) > 1, on_run, on_ran)
            except Exception as exc:  # last line of defence: each job not run yet settles this error
                log.exception("call of %d job(s) failed outside the backend", len(jobs))
                for i in range(len(jobs)):
                    answers.setdefault(i, exc)
        return self._settle_all(jobs, answers, busy_s, settler)

    # -- before the call -------------------------------------------------------------------------------
    def _prepare_all(self, jobs: Sequence[RunningJob], models: contextlib.ExitStack,
                     answers: dict[int, Answer]) -> list[tuple[int, RunningJob]]:
        ready = []
        for i, job in enumerate(jobs):
            try:
                self._prepare(job, models)
                ready.append((i, job))
            except Exception as exc:  # noqa: BLE001 - settled per job through runtime.worker.failures
                answers[i] = exc
        if not ready:
            return ready
        first = ready[0][1].ctx
        for _, job in ready:
            job.ctx.report("loading-model")
        t = time.monotonic()
        try:
            self._supervisor.backend.load_model(first.model or "", first.model_path)
        except Exception as exc:  # noqa: BLE001 - the same model for all: the same outcome for all
            for i, _ in ready:
                answers[i] = exc
            return []
        for _, job in ready:
            job.timings["model_load_ms"] = job.timings.get("model_load_ms", 0.0) + _ms(t)
        live = []
        for i, job in ready:
            try:
                self._checkpoint(job, FRESH_S)  # canceled before the call: dropped from it
                live.append((i, job))
            except Exception as exc:  # noqa: BLE001
                answers[i] = exc
        return live

    def _prepare(self, job: RunningJob, models: contextlib.ExitStack) -> None:
        """The job's seed, inputs and local model files."""
        ctx, prepared = job.ctx, job.prepared
        ctx.job = ctx.job.with_seed()
        self._checkpoint(job, FRESH_S)
        ctx.before_submit = lambda: self._checkpoint(job)  # the backend's last check before it submits: always read
        if self._progress is not None and ctx.progress is None:
            ctx.progress = self._progress.begin(job.job_id, job.attempt.lease, job.attempt.number,
                                                notify_progress=ctx.job.wants("progress"))
            if ctx.job.preview and ctx.previews is None:  # issue 38: previews, when the job asked for them
                ctx.previews = self._progress.preview_sink(job.job_id, job.attempt.lease)
        t = time.monotonic()
        if prepared is not None and prepared.input_error is not None:
            raise prepared.input_error
        ctx.input_images = prepared.inputs if prepared is not None and prepared.inputs is not None \
            else self._fetcher.fetch_all(ctx.job)
        job.timings["inputs_ms"] = _ms(t) + (prepared.inputs_ms if prepared is not None else 0.0)
        t = time.monotonic()
        if self._cache is not None and ctx.model:
            cached = models.enter_context(self._cache.use(ctx.model))
            # a download the prefetch did for this job is still this job's miss (it was hidden, not saved)
            early = prepared.model_hit if prepared is not None else None
            job.cache_hit = cached.hit if early is None else early and cached.hit
            ctx.model_path = cached.path
            load_ms = cached.load_ms + (prepared.model_ms if prepared is not None else 0.0)
            self._metrics.count(m.MODEL_CACHE_HITS if job.cache_hit else m.MODEL_CACHE_MISSES, model=ctx.model,
                                job_id=ctx.job_id, load_ms=load_ms)
        ctx.extra_models = pin_extra_models(self._cache, ctx.job, models, self._workflow_models)
        job.timings["model_load_ms"] = _ms(t)

    # -- the call --------------------------------------------------------------------------------------
    def _call(self, ready: list[tuple[int, RunningJob]], answers: dict[int, Answer], batched: bool,
              on_run: Callable[[], None] | None, on_ran: Callable[[RunningJob], None] | None) -> float:
        """One backend call for the ready jobs; a job whose batch call failed as a whole runs again alone, once."""
        if on_run is not None:
            on_run()  # the pipeline may claim the next job while this call runs
        t = time.monotonic()
        results = self._backend_call([job for _, job in ready])
        if len(ready) > 1:
            for n, ((_, job), result) in enumerate(zip(ready, results, strict=True)):
                if _call_failure(result) and job.reason is None:
                    log.warning("job %s: its batch of %d failed (%s); running it alone", job.job_id, len(ready),
                                result)
                    results[n] = self._backend_call([job])[0]
        end = time.monotonic()
        for (i, job), result in zip(ready, results, strict=True):
            answers[i] = result
            if isinstance(result, BackendResult):  # issue 44: the seed of each output, written on the job
                result.metadata["output_seeds"] = self._supervisor.backend.output_seeds(job.ctx, result)
            job.run_span = (t, end)
            job.timings["inference_ms"] = round((end - t) * 1000, 1)
            if batched:
                job.timings["batch_jobs"] = len(ready)
            if on_ran is not None:
                on_ran(job)
        return end - t

    def _backend_call(self, jobs: list[RunningJob]) -> list[Answer]:
        backend = self._supervisor.backend
        try:
            if len(jobs) == 1:
                results: list[Answer] = [backend.run(jobs[0].ctx)]
            else:
                results = list(backend.run_batch([job.ctx for job in jobs]))
                if len(results) != len(jobs):
                    raise BackendError(f"run_batch answered {len(results)} outcomes for {len(jobs)} jobs")
        except Exception as exc:  # noqa: BLE001 - the whole call failed: every job gets the error
            results = [exc] * len(jobs)
        if any(isinstance(r, BackendUnavailable) for r in results):
            self._supervisor.lost()
        self._supervisor.after_call()  # before the next call is sent: nothing may queue behind a hung node
        return results

    # -- after the call --------------------------------------------------------------------------------
    def _settle_all(self, jobs: Sequence[RunningJob], answers: dict[int, Answer], busy_s: float,
                    settler: Settler | None) -> list[Outcome]:
        def record(i: int, outcome: Outcome) -> Outcome:
            job = jobs[i]
            return self._recorder.record(job.job_id, outcome, job.picked, busy_s if i == 0 else 0.0, job.timings,
                                         job)

        def settle(i: int) -> Outcome:
            return record(i, self._settlement.settle(jobs[i], answers[i]))

        if settler is not None:  # overlapped settling: results settle on the lanes while the next call runs
            outcomes = []
            for i in range(len(jobs)):
                if isinstance(answers[i], BackendResult):
                    settler.submit(lambda i=i: settle(i))
                    outcomes.append(Outcome.SETTLING)
                else:  # failures settle before the next claim
                    outcomes.append(settle(i))
            return outcomes
        if len(jobs) == 1:
            return [settle(0)]
        # Each job's upload, record and acknowledgement touch only that job: settled side by side, then
        # recorded here, on the loop's thread, before the next job is claimed.
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="batch-settle") as pool:
            settled = list(pool.map(lambda i: self._settlement.settle(jobs[i], answers[i]), range(len(jobs))))
        return [record(i, outcome) for i, outcome in enumerate(settled)]


def _call_failure(result: Answer) -> bool:
    """An error of the whole call (not of this job's input, not an interruption): worth a run alone."""
    return isinstance(result, Exception) and not isinstance(result, JobInputError | JobInterrupted)


def _ms(t: float) -> float:
    return round((time.monotonic() - t) * 1000, 1)
