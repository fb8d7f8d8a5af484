"""The settle lane: upload, record and acknowledge finished jobs while the backend runs the next one.

At most ``lanes`` settles at a time (default 2: with short jobs one settle - a record read, an upload, a
conditional write, a delete - can take as long as a run); ``submit`` waits for a free lane, so a slow store
or bucket slows the loop down instead of piling up settles. The lease guard of a job stays up until its
settle is done, so its message and record lease stay renewed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Settler:
    def __init__(self, lanes: int = 2) -> None:
        self.lanes = max(1, lanes)
        self._threads: list[threading.Thread] = []

    def submit(self, settle: Callable[[], object]) -> None:
        while True:
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._threads) < self.lanes:
                break
            self._threads[0].join()
        thread = threading.Thread(target=settle, name="settle", daemon=True)
        self._threads.append(thread)
        thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the settles in flight; True when none is left running."""
        for thread in list(self._threads):
            thread.join(timeout)
        return not self.busy()

    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads)
