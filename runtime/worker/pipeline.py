"""The pipelined main loop: the backend runs job N while job N+1 is received and claimed and job N-1 settles.

Three lanes around the one backend (one job on it at a time)::

    prefetch thread   receive, inputs, model for N+1                  (runtime.worker.prefetch)
    claim-ahead       start_attempt + lease guard of N+1, just before N is expected to end
    main loop         backend.run(N)
    settle lane       upload, record, acknowledge N-1                 (runtime.worker.settler)

Claim-ahead (``claim_ahead``, on by default): the attempt of the next job is started in the record ``lead``
seconds before the running job's expected end (EWMA of recent runs), where ``lead`` is 1.5 x (claim latency
+ 2 deviations, recent averages), at least 20 ms, so the backend does not wait for that conditional write
either. The record says "running" at most ``lead`` early, and only for the job that the backend takes next.
With no estimate yet (the first job, or after an idle spell) nothing is claimed ahead. A claimed-ahead job
that a stop, drain or spot notice meets before it starts is handed back uncounted (``release_attempt``), as
a running job would be; a cancel request reaches it through its lease guard and settles it as canceled when
its turn comes.

Overlapped settling (``overlap_settle``, on by default): job N settles (upload, record, ack) while N+1 runs.

Either way the worker holds attempts that are not running, and a job that kills the worker (OOM, poison)
must not use up their attempts (``make chaos``, worker-killing-job, caught that before). So a claim made
ahead leaves the attempt pending and the run-marker lanes (runtime.worker.run_marks) record when its run
began and, with ``overlap_settle``, when a run finished; the next pick-up or the sweeper gives back the count
of an attempt whose worker died while it was pending or finished (runtime.jobs.attempts). A job claimed when
the backend is free begins at once: it is counted at once, with no marker to write.
Both off: N is settled before N+1 is claimed; only receiving, inputs and the model of N+1 overlap N's run.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING

from runtime.jobs.attempts import RUN_PENDING
from runtime.worker.batching import Batcher, batch_size_for
from runtime.worker.inputs import read_job
from runtime.worker.job_runner import RunningJob
from runtime.worker.prefetch import Prefetcher, Prepared
from runtime.worker.run_marks import RunMarks
from runtime.worker.settler import Settler

if TYPE_CHECKING:
    from runtime.worker.agent import Agent

log = logging.getLogger(__name__)

TAKE_TICK_S = 1.0  # the loop goes round (health tick) at least this often while it waits for a job
MIN_LEAD_S = 0.02
SWITCH_INTERVAL_S = 0.001
LEAD_FACTOR = 1.5  # margin over the claim's expected latency plus two deviations


class Pipeline:
    def __init__(self, agent: Agent, budget: int | None) -> None:
        cfg = agent.config
        self.agent = agent
        prepare_model = None
        if agent.model_cache is not None and agent.backend.name != "test-pattern":
            prepare_model = agent.model_cache.ensure
        batch = batch_size_for(agent)  # dynamic batching (runtime.worker.batching): hold enough for a batch
        self.batcher = Batcher(agent, batch, cfg.batch_wait_ms / 1000) if batch > 1 else None
        self.prefetcher = Prefetcher(agent.consumer, capacity=max(cfg.prefetch_jobs, batch),
                                     wait_seconds=cfg.queue.wait_time_seconds,
                                     visibility_seconds=cfg.queue.visibility_timeout_seconds,
                                     prepare_inputs=agent.fetcher.fetch_all, prepare_model=prepare_model,
                                     budget=budget, read_job=lambda data: read_job(data, cfg.allow_loopback_urls))
        self.settler = Settler()
        self.track_run = cfg.claim_ahead or cfg.overlap_settle  # the worker holds attempts that are not running
        self.marks = RunMarks(agent.store) if self.track_run else None
        self.run_ewma_s: float | None = None
        self.claim_ewma_s = MIN_LEAD_S
        self.claim_dev_s = 0.0  # mean absolute deviation of the claim latency
        self._ahead_requests: queue.Queue[_Ahead | None] = queue.Queue()
        self._ahead: _Ahead | None = None  # the claim-ahead asked for while the current job runs
        threading.Thread(target=self._ahead_lane, name="claim-ahead", daemon=True).start()

    # -- control ---------------------------------------------------------------------------------------
    def hand_back(self) -> None:
        """Stop, drain or spot notice: every prefetched message goes back at once (delay 0)."""
        self.prefetcher.close()

    # -- loop ------------------------------------------------------------------------------------------
    def run(self, max_jobs: int | None, idle_exit_seconds: float | None) -> int:
        agent, done = self.agent, 0
        # The agent's threads are I/O-bound; what matters is how soon the main loop gets the interpreter back
        # when the backend answers (CPython's default hand-over is every 5 ms of a busy thread's running).
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        try:
            if not agent._stopping.is_set():
                self.prefetcher.start()
            done = self._loop(max_jobs, idle_exit_seconds)
        finally:
            self.prefetcher.close(join_seconds=agent.config.queue.wait_time_seconds + 5)
            leftover = self._collect_ahead()
            if isinstance(leftover, RunningJob):  # claimed ahead but the loop ended: hand it back uncounted
                agent.interrupt(leftover, "stop")
                agent.execute(leftover)
            self._ahead_requests.put(None)
            self.settler.close()
            if self.marks is not None:
                self.marks.close()
        return done

    def _loop(self, max_jobs: int | None, idle_exit_seconds: float | None) -> int:
        agent = self.agent
        done, idle_since = 0, time.monotonic()
        while not agent._stopping.is_set() and (max_jobs is None or done < max_jobs):
            agent.last_tick = time.monotonic()
            agent._ensure_backend()
            agent.pause_if_troubled()
            claimed = self._collect_ahead() or self._take_and_claim()
            if claimed is None:
                self.run_ewma_s = None if time.monotonic() - idle_since > 5 else self.run_ewma_s
                if not self.settler.busy():
                    agent.lifecycle.protect(False)
                agent._emit_busy()
                if idle_exit_seconds is not None and time.monotonic() - idle_since > idle_exit_seconds:
                    break
                continue
            done += 1
            idle_since = time.monotonic()
            if isinstance(claimed, str):
                continue  # settled at the claim (final already, canceled while queued, attempts used up)
            settler = self.settler if agent.config.overlap_settle else None  # None: settled before N+1 starts
            batch = [claimed]
            if self.batcher is not None:
                batch, taken = self.batcher.collect(claimed, self.prefetcher, self._claim,
                                                    None if max_jobs is None else max_jobs - done)
                done += taken
            on_run = lambda n=done, j=claimed: self._on_run(j, max_jobs, n)  # noqa: E731
            if len(batch) > 1:  # the others were claimed with the backend free: never pending
                self.batcher.execute(batch, settler, on_run=on_run, on_ran=self._on_ran)
                self._observe_run(batch[0])
                continue
            agent.execute(claimed, settler, on_run=on_run, on_ran=self._on_ran)
            self._observe_run(claimed)
        return done

    def _take_and_claim(self) -> RunningJob | str | None:
        item = self.prefetcher.take(TAKE_TICK_S)
        if item is None:
            return None
        if self.agent._stopping.is_set():
            self.agent.runner.release(item.received, 0, "stopping")
            return None
        return self._claim(item)

    def _claim(self, item: Prepared, ahead: bool = False) -> RunningJob | str:
        """``ahead``: claimed while another job runs, so pending until its run begins (run markers); a job
        claimed when the backend is free begins at once and is counted at once."""
        t = time.monotonic()
        claimed = self.agent.claim(item.received, item, ahead and self.track_run)
        elapsed = time.monotonic() - t
        self.claim_dev_s = 0.8 * self.claim_dev_s + 0.2 * abs(elapsed - self.claim_ewma_s)
        self.claim_ewma_s = 0.8 * self.claim_ewma_s + 0.2 * elapsed
        return claimed

    def _observe_run(self, job: RunningJob) -> None:
        ms = job.timings.get("inference_ms")
        if ms is None:
            return
        s = ms / 1000
        self.run_ewma_s = s if self.run_ewma_s is None else 0.7 * self.run_ewma_s + 0.3 * s

    # -- run markers (runtime.worker.run_marks) ----------------------------------------------------------
    def _on_run(self, job: RunningJob, max_jobs: int | None, done: int) -> None:
        """Right before backend.run: the attempt is no longer pending; claim the next job ahead."""
        record = job.attempt.record or {}
        if self.marks is not None and record.get(RUN_PENDING) == job.attempt.lease:
            self.marks.began(job.ctx.job_id, job.attempt.lease)
        self._schedule_ahead(max_jobs, done)

    def _on_ran(self, job: RunningJob) -> None:
        """The backend answered: with overlapped settling, a death from here on is not this job's doing."""
        if self.marks is not None and self.agent.config.overlap_settle:
            self.marks.finished(job.ctx.job_id, job.attempt.lease)

    # -- claim-ahead -----------------------------------------------------------------------------------
    def _schedule_ahead(self, max_jobs: int | None, done: int) -> None:
        """Called right before backend.run of the current job: claim the next one just before it ends."""
        if not self.agent.config.claim_ahead or self.run_ewma_s is None or self.agent._stopping.is_set() \
                or (max_jobs is not None and done >= max_jobs):
            return
        lead = max(MIN_LEAD_S, LEAD_FACTOR * (self.claim_ewma_s + 2 * self.claim_dev_s))
        self._ahead = _Ahead(time.monotonic() + max(0.0, self.run_ewma_s - lead))
        self._ahead_requests.put(self._ahead)  # a long-lived thread: no thread start on the backend's path

    def _ahead_lane(self) -> None:
        while True:
            request = self._ahead_requests.get()
            if request is None:
                return
            try:
                request.result = self._claim_ahead(request)
            except Exception:  # the claim maps its own failures; this keeps the lane alive regardless
                log.exception("claim-ahead failed")
            finally:
                request.done.set()

    def _claim_ahead(self, request: _Ahead) -> RunningJob | str | None:
        if request.cancel.wait(max(0.0, request.at - time.monotonic())):
            return None
        item = None
        while item is None and not request.cancel.is_set() and not self.prefetcher.closed:
            item = self.prefetcher.take(0.05)
        if item is None:
            return None
        if request.cancel.is_set() or self.agent._stopping.is_set():
            self._put_back(item)  # the backend got free first: the loop takes it from the prefetch itself
            return None
        return self._claim(item, ahead=True)

    def _put_back(self, item: Prepared) -> None:
        if self.agent._stopping.is_set():
            self.agent.runner.release(item.received, 0, "stopping")
        else:
            self.prefetcher.push_front(item)

    def _collect_ahead(self) -> RunningJob | str | None:
        """The backend is free: stop the claim-ahead (letting a claim in flight finish) and take its job."""
        request, self._ahead = self._ahead, None
        if request is None:
            return None
        request.cancel.set()
        request.done.wait()
        return request.result


class _Ahead:
    """One claim-ahead request: claim the next job at ``at`` (monotonic) unless canceled first."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.cancel, self.done = threading.Event(), threading.Event()
        self.result: RunningJob | str | None = None
