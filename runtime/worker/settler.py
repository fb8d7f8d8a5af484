"""The settle lane: upload, record and acknowledge finished jobs while the backend runs the next one.

At most ``lanes`` settles at a time (default 2: with short jobs one settle - a record read, an upload, a
conditional write, a delete - can take as long as a run); ``submit`` waits for a free lane, so a slow store
or bucket slows the loop down instead of piling up settles. The lanes are long-lived threads: handing a
settle over costs the main loop a queue put, not a thread start (which waits for the new thread to run).
The lease guard of a job stays up until its settle is done, so its message and record lease stay renewed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Settler:
    def __init__(self, lanes: int = 2) -> None:
        self.lanes = max(1, lanes)
        self._free = threading.Semaphore(self.lanes)
        self._work: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._lane, name=f"settle-{i}", daemon=True)
                         for i in range(self.lanes)]
        for thread in self._threads:
            thread.start()

    def submit(self, settle: Callable[[], object]) -> None:
        self._free.acquire()
        self._work.put(settle)

    def _lane(self) -> None:
        while True:
            settle = self._work.get()
            try:
                if settle is None:
                    return
                settle()
            except Exception:  # the settle maps its own failures; this keeps the lane alive regardless
                log.exception("settle failed")
            finally:
                if settle is not None:
                    self._free.release()
                self._work.task_done()

    def wait(self) -> None:
        """Wait for every settle submitted so far."""
        self._work.join()

    def busy(self) -> bool:
        return self._work.unfinished_tasks > 0

    def close(self) -> None:
        """Finish what was submitted, then end the lanes."""
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join()
