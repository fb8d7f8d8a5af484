"""The run-marker lane: tell the record when an attempt's backend run began and when it finished.

Why: a pipelined worker holds three attempts at once (N settling, N+1 running, N+2 claimed ahead); when N+1
kills the worker only N+1 died running, and the record must be able to say so (runtime.jobs.attempts, "run
markers"). The writes are conditional on the lease and go through one long-lived thread, in order, so the
backend never waits for them and "N+1 began" is never recorded before "N finished": whoever sees a run
begin in the record (the chaos harness, an operator) knows the run before it is safe.
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
        self._work: queue.Queue[tuple[str, str, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._lane, name="run-marks", daemon=True)
        self._thread.start()

    def began(self, job_id: str, lease: int) -> None:
        self._work.put((BEGAN, job_id, lease))

    def finished(self, job_id: str, lease: int) -> None:
        self._work.put((FINISHED, job_id, lease))

    def wait(self) -> None:
        """Wait for every marker put so far (tests; the loop never waits)."""
        self._work.join()

    def close(self) -> None:
        """Write what was put, then end the lane."""
        self._work.put(None)
        self._thread.join()

    def _lane(self) -> None:
        while True:
            item = self._work.get()
            try:
                if item is None:
                    return
                self._write(*item)
            finally:
                self._work.task_done()

    def _write(self, what: str, job_id: str, lease: int) -> None:
        write = self.store.mark_run_began if what == BEGAN else self.store.mark_run_finished
        try:
            if not write(job_id, lease):  # settled already, or another attempt owns the job: nothing to mark
                log.debug("job %s lease %d: run %s not marked (no longer running under it)", job_id, lease, what)
        except StoreUnavailableError as exc:  # the attempt stays counted (finished) or uncounted (began)
            log.warning("job %s lease %d: could not mark the run %s: %s", job_id, lease, what, exc)
        except Exception:  # keeps the lane alive whatever the store raises
            log.exception("job %s lease %d: marking the run %s failed", job_id, lease, what)
