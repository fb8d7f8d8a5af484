"""Dynamic batching: compatible jobs waiting for this worker run as one ``backend.run_batch`` call.

A GPU runs four SDXL images in one call in little more than the time of one (H200, eager: 4.79 s for four,
3.89 s for one), so a worker that holds several prefetched jobs for the same model, task, size, steps and
scheduler runs them together. What makes jobs compatible is the backend's to say (runtime.backends.base:
a backend with ``supports_batching`` answers ``batch_key(ctx)``, equal keys can share a call, None: never batched, and
``run_batch(ctxs)``, one outcome per job). The seam is the prefetch (runtime.worker.prefetch): after the loop
takes job N, ``collect`` takes up to ``max_jobs - 1`` held jobs with N's key, waiting up to ``wait_s`` for more
to arrive, and claims each. The batch then runs on the one execution path (runtime.worker.execution).

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

import logging
from collections.abc import Callable, Hashable

from runtime.agent_config import AgentConfig
from runtime.backends.base import Backend, BackendError, JobContext
from runtime.worker.messages import MessageActions
from runtime.worker.outcomes import Outcome
from runtime.worker.prefetch import Prefetcher, Prepared
from runtime.worker.running_job import RunningJob
from runtime.worker.stop_signal import StopSignal

log = logging.getLogger(__name__)


def batch_size_for(backend: Backend, config: AgentConfig) -> int:
    """The most jobs per call: the config's ``batch_max_jobs``, else what the backend recommends (1: off)."""
    if not backend.supports_batching:
        return 1
    if config.batch_max_jobs is not None:
        return config.batch_max_jobs
    return max(1, int(backend.batch_default_jobs()))


def key_of(backend: Backend, item: Prepared) -> Hashable | None:
    """The backend's batch key for a prefetched job; None (never batched) when its inputs failed or it says so."""
    if item.input_error is not None or item.job is None:
        return None
    ctx = JobContext(job_id=item.received.message.job_id, job=item.job, input_images=dict(item.inputs or {}))
    try:
        return backend.batch_key(ctx)
    except BackendError:  # an invalid input: the job runs alone and fails with its own error
        return None


class Batcher:
    """Collects batches for the pipeline (runtime.worker.pipeline); one per agent loop."""

    def __init__(self, backend: Backend, *, stop: StopSignal, messages: MessageActions, max_jobs: int,
                 wait_s: float) -> None:
        self._backend, self._stop, self._messages = backend, stop, messages
        self.max_jobs, self.wait_s = max_jobs, wait_s

    def collect(self, first: RunningJob, prefetcher: Prefetcher,
                claim: Callable[[Prepared], RunningJob | Outcome], room: int | None) -> tuple[list[RunningJob], int]:
        """``first`` plus claimed compatible jobs from the prefetch; also how many extra jobs were taken
        (claimed ones that must not run, e.g. canceled while queued, settle at the claim and count too)."""
        limit = self.max_jobs - 1 if room is None else min(self.max_jobs - 1, room)
        key = key_of(self._backend, first.prepared) if first.prepared is not None else None
        if limit <= 0 or key is None or self._stop.is_set():
            return [first], 0
        keys: dict[int, Hashable | None] = {}  # held items stay alive during the take: ids are stable

        def matches(item: Prepared) -> bool:  # called under the prefetch's lock, again after each arrival
            if id(item) not in keys:
                keys[id(item)] = key_of(self._backend, item)  # img2img decodes the input image: once
            return keys[id(item)] == key

        items = prefetcher.take_matching(matches, limit, self.wait_s)
        batch = [first]
        for item in items:
            if self._stop.is_set():
                self._messages.release(item.received, 0, "stopping")
                continue
            claimed = claim(item)
            if isinstance(claimed, RunningJob):
                batch.append(claimed)
        return batch, len(items)
