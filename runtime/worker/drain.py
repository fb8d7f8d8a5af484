"""Drain policy: what a termination notice does to the job on the backend.

A spot interruption notice gives a deadline: the job on the backend finishes when its expected remaining
time (an EWMA of recent jobs) fits before the deadline less ``drain_margin_seconds``, and is handed back at
once otherwise; with no estimate yet it keeps running and is handed back if it is still running at the
cutoff. A terminating lifecycle state has no deadline of its own: heartbeats keep the lifecycle action
open while the job finishes. Jobs that were only prefetched are handed back by the agent before this
policy runs (they have not started).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from runtime.worker.lifecycle import Notice
from runtime.worker.outcomes import StopReason
from runtime.worker.running_job import RunningJob

log = logging.getLogger(__name__)


class DrainPolicy:
    def __init__(self, margin_seconds: float, *, interrupt: Callable[[RunningJob, StopReason], None],
                 current: Callable[[], RunningJob | None]) -> None:
        self.margin_seconds = margin_seconds
        self._interrupt, self._current = interrupt, current
        self.ewma_job_s: float | None = None

    def observe(self, job_seconds: float) -> None:
        """A job succeeded in ``job_seconds`` (pick-up to settled): update the estimate."""
        e = self.ewma_job_s
        self.ewma_job_s = job_seconds if e is None else 0.8 * e + 0.2 * job_seconds

    def apply(self, job: RunningJob, notice: Notice) -> None:
        left = notice.seconds_left()
        if left is None:
            return  # terminating hook: heartbeats keep the action open while the job finishes
        cutoff = left - self.margin_seconds
        if self.ewma_job_s is not None:
            remaining = max(0.0, self.ewma_job_s - (time.monotonic() - job.started))
            fits = remaining <= cutoff
            log.info("drain: job %s needs ~%.0fs, %.0fs usable: %s", job.ctx.job_id, remaining, cutoff,
                     "finishing" if fits else "handing back")
            if not fits:
                self._interrupt(job, StopReason.DRAIN)
                return
        # No estimate yet (or it fits): keep going, but hand it back if it is still running at the cutoff.
        timer = threading.Timer(max(0.0, cutoff), self._cutoff, args=(job,))
        timer.daemon = True
        timer.start()

    def _cutoff(self, job: RunningJob) -> None:
        if self._current() is job:
            log.warning("drain: job %s still running at the cutoff; handing it back", job.ctx.job_id)
            self._interrupt(job, StopReason.DRAIN)
