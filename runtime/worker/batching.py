"""Dynamic batching: compatible jobs waiting for this worker run as one ``backend.run_batch`` call.

A GPU runs four SDXL images in one call in little more than the time of one (H200, eager: 4.79 s for four,
3.89 s for one), so a worker that holds several prefetched jobs for the same model, task, size, steps and
scheduler runs them together. What makes jobs compatible is the backend's to say: backends that batch have
``run_batch(ctxs)`` (one outcome per job) and ``batch_key(ctx)`` (equal keys can share a call; None: never
batched). The seam is the prefetch (runtime.worker.prefetch): after the loop takes job N, ``collect`` takes
up to ``max_jobs - 1`` held jobs with N's key, waiting up to ``wait_s`` for more to arrive, and claims each.

Every job of a batch stays its own job: its own attempt (start_attempt, lease, fencing, lease guard with
heartbeats), inputs, seed, outputs under its attempt's keys, record and therefore webhook events. What
happens to a batch, by cause (runtime.worker.failures classifies each job's own outcome):

- canceled before the call: the job's checkpoint stops it; it settles as canceled and the others run;
- canceled during the call: the call goes on for the others (taking one image out of a denoising batch
  would change the others' shapes and compiled graphs) and the job settles as canceled when it returns;
  the backend stops early only when every job of the call is canceled. The cost is one batch's time;
- drain, stop or spot notice: the agent interrupts every job of the batch (they share one backend call)
  and each is handed back uncounted;
- an input error of one job: only that job fails (the backend validates each job alone);
- a failure of the call (out of memory, a pipeline error): which job caused it is unknown, so each job
  whose outcome is such an error runs again alone, once, in the same attempt; a job failing alone settles
  its own error (counted, retried) and the others are not charged for it;
- the worker dies mid-batch: every job's lease runs out and each is retried with its attempt counted
  in its own record (tests/e2e/test_batch_drills.py).

Older jobs that do not match wait at most one batch: the next loop takes the oldest held job first.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from runtime import metric_names as m
from runtime.backends.base import (
    BackendError,
    BackendResult,
    BackendUnavailable,
    JobContext,
    JobInputError,
    JobInterrupted,
)
from runtime.worker.job_runner import FRESH_S, RunningJob
from runtime.worker.prefetch import Prefetcher, Prepared

if TYPE_CHECKING:
    from runtime.worker.agent import Agent
    from runtime.worker.settler import Settler

log = logging.getLogger(__name__)


def batch_size_for(agent: Agent) -> int:
    """The most jobs per call: the config's ``batch_max_jobs``, else what the backend recommends (1: off)."""
    backend = agent.backend
    if not callable(getattr(backend, "run_batch", None)) or not callable(getattr(backend, "batch_key", None)):
        return 1
    if agent.config.batch_max_jobs is not None:
        return agent.config.batch_max_jobs
    default = getattr(backend, "batch_default_jobs", None)
    return max(1, int(default())) if callable(default) else 1


def key_of(backend: Any, item: Prepared) -> Hashable | None:
    """The backend's batch key for a prefetched job; None (never batched) when its inputs failed or it says so."""
    if item.input_error is not None or item.job is None:
        return None
    ctx = JobContext(job_id=item.received.message.job_id, job=item.job, input_images=dict(item.inputs or {}))
    try:
        return backend.batch_key(ctx)
    except BackendError:  # an invalid input: the job runs alone and fails with its own error
        return None


class Batcher:
    """Collects and runs batches for the pipeline (runtime.worker.pipeline); one per agent loop."""

    def __init__(self, agent: Agent, max_jobs: int, wait_s: float) -> None:
        self.agent, self.max_jobs, self.wait_s = agent, max_jobs, wait_s

    # -- collecting ---------------------------------------------------------------------------------------
    def collect(self, first: RunningJob, prefetcher: Prefetcher, claim: Callable[[Prepared], RunningJob | str],
                room: int | None) -> tuple[list[RunningJob], int]:
        """``first`` plus claimed compatible jobs from the prefetch; also how many extra jobs were taken
        (claimed ones that must not run, e.g. canceled while queued, settle at the claim and count too)."""
        limit = self.max_jobs - 1 if room is None else min(self.max_jobs - 1, room)
        key = key_of(self.agent.backend, first.prepared) if first.prepared is not None else None
        if limit <= 0 or key is None or self.agent._stopping.is_set():
            return [first], 0
        keys: dict[int, Hashable | None] = {}  # held items stay alive during the take: ids are stable

        def matches(item: Prepared) -> bool:  # called under the prefetch's lock, again after each arrival
            if id(item) not in keys:
                keys[id(item)] = key_of(self.agent.backend, item)  # img2img decodes the input image: once
            return keys[id(item)] == key

        items = prefetcher.take_matching(matches, limit, self.wait_s)
        batch = [first]
        for item in items:
            if self.agent._stopping.is_set():
                self.agent.runner.release(item.received, 0, "stopping")
                continue
            claimed = claim(item)
            if isinstance(claimed, RunningJob):
                batch.append(claimed)
        return batch, len(items)

    # -- running ------------------------------------------------------------------------------------------
    def execute(self, jobs: list[RunningJob], settler: Settler | None = None, on_run: Any = None,
                on_ran: Any = None) -> list[str]:
        """Run claimed compatible jobs as one backend call, then settle each (here or on ``settler``).

        ``on_run`` is called right before the call, ``on_ran(job)`` for each job once the backend answered
        (the run markers of runtime.worker.run_marks, as for a single job)."""
        agent = self.agent
        now = time.monotonic()
        for job in jobs:
            job.started = now
        agent.current, agent.batch = jobs[0], tuple(jobs)
        if agent._stopping.is_set():  # claimed ahead of a stop or a notice: hand them back before they start
            agent.interrupt(jobs[0], "stop" if agent._stop_requested else "drain")
        jobs[0].switched = agent._note_model(jobs[0].ctx.model)
        agent.lifecycle.protect(True)
        agent.metrics.emit({m.BATCH_SIZE: len(jobs)}, {"worker_id": agent.worker_id, "model": jobs[0].ctx.model})
        outcomes: dict[int, BackendResult | Exception] = {}
        cache_hits: dict[int, bool | None] = {}
        busy_s = 0.0
        try:
            with contextlib.ExitStack() as stack:
                ready = self._prepare_all(jobs, stack, outcomes, cache_hits)
                if ready:
                    busy_s = self._run(ready, outcomes, on_run, on_ran)
        except Exception as exc:  # last line of defence: each job not run yet settles this error
            log.exception("batch of %d failed outside the backend call", len(jobs))
            for i in range(len(jobs)):
                outcomes.setdefault(i, exc)
        finally:
            agent.current, agent.batch = None, ()
        if settler is not None:  # overlap_settle: on the settle lanes while the next job runs
            return [self._settle_on(settler, job, outcomes[i], cache_hits.get(i), busy_s if i == 0 else 0.0)
                    for i, job in enumerate(jobs)]
        # Each job's upload, record and acknowledgement touch only that job: settled side by side, then recorded
        # here (the agent's counters are the loop's), before the next job is claimed.
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="batch-settle") as pool:
            settled = list(pool.map(lambda i: self._finish(jobs[i], outcomes[i], cache_hits.get(i)), range(len(jobs))))
        return [agent._record(job.ctx.job_id, result, job.picked, busy_s if i == 0 else 0.0, job.timings, job)
                for i, (job, result) in enumerate(zip(jobs, settled, strict=True))]

    def _prepare_all(self, jobs: list[RunningJob], stack: contextlib.ExitStack,
                     outcomes: dict[int, Any], cache_hits: dict[int, bool | None]) -> list[tuple[int, RunningJob]]:
        """Each job's seed, inputs and model (as runtime.worker.job_runner.run_backend does for one job)."""
        agent, ready = self.agent, []
        for i, job in enumerate(jobs):
            try:
                cache_hits[i] = self._prepare(job, stack)
                ready.append((i, job))
            except Exception as exc:  # noqa: BLE001 - settled per job through runtime.worker.failures
                outcomes[i] = exc
        if not ready:
            return ready
        t = time.monotonic()
        try:
            agent.backend.load_model(ready[0][1].ctx.model or "", ready[0][1].ctx.model_path)
        except Exception as exc:  # noqa: BLE001 - the same model for all: the same outcome for all
            for i, _ in ready:
                outcomes[i] = exc
            return []
        for _, job in ready:
            job.timings["model_load_ms"] = job.timings.get("model_load_ms", 0.0) + _ms(t)
        live = []
        for i, job in ready:
            try:
                agent.runner.checkpoint(job, FRESH_S)  # canceled before the call: dropped from it
                live.append((i, job))
            except Exception as exc:  # noqa: BLE001
                outcomes[i] = exc
        return live

    def _prepare(self, job: RunningJob, stack: contextlib.ExitStack) -> bool | None:
        agent, ctx, prepared = self.agent, job.ctx, job.prepared
        ctx.job = ctx.job.with_seed()
        agent.runner.checkpoint(job, FRESH_S)
        ctx.before_submit = lambda: agent.runner.checkpoint(job)
        t = time.monotonic()
        if prepared is not None and prepared.input_error is not None:
            raise prepared.input_error
        ctx.input_images = prepared.inputs if prepared is not None and prepared.inputs is not None \
            else agent.fetcher.fetch_all(ctx.job)
        job.timings["inputs_ms"] = _ms(t) + (prepared.inputs_ms if prepared is not None else 0.0)
        t = time.monotonic()
        hit: bool | None = None
        if agent.model_cache is not None and ctx.model and agent.backend.name != "test-pattern":
            cached = stack.enter_context(agent.model_cache.use(ctx.model))
            early = prepared.model_hit if prepared is not None else None
            hit = cached.hit if early is None else early and cached.hit
            ctx.model_path = cached.path
            agent.metrics.count(m.MODEL_CACHE_HITS if hit else m.MODEL_CACHE_MISSES, model=ctx.model,
                                job_id=ctx.job_id, load_ms=cached.load_ms)
        job.timings["model_load_ms"] = _ms(t)
        return hit

    def _run(self, ready: list[tuple[int, RunningJob]], outcomes: dict[int, Any], on_run: Any,
             on_ran: Any = None) -> float:
        """One run_batch for the ready jobs; a job whose call failed as a whole runs again alone, once."""
        if on_run is not None:
            on_run()
        t = time.monotonic()
        results = self._call([job for _, job in ready])
        if len(ready) > 1:
            for n, ((_, job), result) in enumerate(zip(ready, results, strict=True)):
                if _call_failure(result) and job.reason is None:
                    log.warning("job %s: its batch of %d failed (%s); running it alone", job.ctx.job_id,
                                len(ready), result)
                    results[n] = self._call([job])[0]
        end = time.monotonic()
        for (i, job), result in zip(ready, results, strict=True):
            outcomes[i] = result
            job.run_span = (t, end)
            job.timings["inference_ms"] = round((end - t) * 1000, 1)
            job.timings["batch_jobs"] = len(ready)
            if on_ran is not None:
                on_ran(job)
        return end - t

    def _call(self, jobs: list[RunningJob]) -> list[BackendResult | Exception]:
        try:
            results = list(self.agent.backend.run_batch([job.ctx for job in jobs]))
            if len(results) != len(jobs):
                raise BackendError(f"run_batch answered {len(results)} outcomes for {len(jobs)} jobs")
        except Exception as exc:  # noqa: BLE001 - the whole call failed: every job gets the error
            results = [exc] * len(jobs)
        if any(isinstance(r, BackendUnavailable) for r in results):
            self.agent.backend_lost()
        return results

    def _finish(self, job: RunningJob, outcome: BackendResult | Exception, cache_hit: bool | None) -> str:
        """Settle one job of the batch by its own outcome; never raises."""
        runner = self.agent.runner
        try:
            if isinstance(outcome, BackendResult):
                return runner.finish(job, outcome, job.timings, cache_hit)
            return runner.settle_exception(job, outcome, job.timings)
        except Exception:  # last line of defence: the lease runs out and the job is retried
            log.exception("job %s: settling failed", job.ctx.job_id)
            return "unsettled"
        finally:
            job.guard.stop()  # the message and the record's lease stay renewed until the job is settled

    def _settle_on(self, settler: Settler, job: RunningJob, outcome: BackendResult | Exception,
                   cache_hit: bool | None, busy_s: float) -> str:
        def settle() -> str:
            return self.agent._record(job.ctx.job_id, self._finish(job, outcome, cache_hit), job.picked, busy_s,
                                      job.timings, job)

        if not isinstance(outcome, BackendResult):
            return settle()  # failures settle before the next claim, as for one job
        settler.submit(settle)
        return "settling"


def _call_failure(result: BackendResult | Exception) -> bool:
    """An error of the whole call (not of this job's input, not an interruption): worth a run alone."""
    return isinstance(result, Exception) and not isinstance(result, JobInputError | JobInterrupted)


def _ms(t: float) -> float:
    return round((time.monotonic() - t) * 1000, 1)
