"""The run-marker lanes: tell the record when an attempt's backend run began and when it finished.

Why: a pipelined worker holds three attempts at once (N settling, N+1 running, N+2 claimed ahead); when N+1
kills the worker only N+1 died running, and the record must be able to say so (runtime.jobs.attempts, "run
markers"). The writes are conditional on the lease and go through two long-lived threads, one per kind, so
the backend never waits for them, and "N finished" and "N+1 began" (put at the same switch) are in flight
together: both land one write after the switch, not two. A worker killed within that write of the switch can
be misread (docs/worker.md says which way).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from runtime.jobs.errors import StoreUnavailableError

log = logging.getLogger(__name__)

BEGAN, FINISHED = "began", "finished"


class RunMarks:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._lanes = {kind: _Lane(kind, write) for kind, write in
                       ((BEGAN, store.mark_run_began), (FINISHED, store.mark_run_finished))}

    def began(self, job_id: str, lease: int) -> None:
        self._lanes[BEGAN].put(job_id, lease)

    def finished(self, job_id: str, lease: int) -> None:
        self._lanes[FINISHED].put(job_id, lease)

    def wait(self) -> None:
        """Wait for every marker put so far (tests; the loop never waits)."""
        for lane in self._lanes.values():
            lane.work.join()

    def close(self) -> None:
        """Write what was put, then end the lanes."""
        for lane in self._lanes.values():
            lane.work.put(None)
        for lane in self._lanes.values():
            lane.thread.join()


class _Lane:
    """One kind of marker, written in the order put."""

    def __init__(self, kind: str, write: Any) -> None:
        self.kind, self.write = kind, write
        self.work: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"run-marks-{kind}", daemon=True)
        self.thread.start()

    def put(self, job_id: str, lease: int) -> None:
        self.work.put((job_id, lease))

    def _run(self) -> None:
        while True:
            item = self.work.get()
            try:
                if item is None:
                    return
                self._write(*item)
            finally:
                self.work.task_done()

    def _write(self, job_id: str, lease: int) -> None:
        try:
            if not self.write(job_id, lease):  # settled already, or another attempt owns the job
                log.debug("job %s lease %d: run %s not marked (no longer running under it)", job_id, lease, self.kind)
        except StoreUnavailableError as exc:  # the attempt stays counted (finished) or uncounted (began)
            log.warning("job %s lease %d: could not mark the run %s: %s", job_id, lease, self.kind, exc)
        except Exception:  # keeps the lane alive whatever the store raises
            log.exception("job %s lease %d: marking the run %s failed", job_id, lease, self.kind)
