"""The settle lane: upload, record and acknowledge a finished job while the backend runs the next one.

One settle at a time: ``submit`` first waits for the previous settle, so at most one job is being settled
while one runs, and a slow store or bucket slows the loop down instead of piling up settles. The lease
guard of a job stays up until its settle is done, so its message and record lease stay renewed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Settler:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def submit(self, settle: Callable[[], None]) -> None:
        self.wait()
        self._thread = threading.Thread(target=settle, name="settle", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the settle in flight; True when none is left running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy()

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
