"""The agent's stop flag, shared by its parts: set by SIGTERM (stop) or a termination notice (drain)."""

from __future__ import annotations

import threading

from runtime.worker.outcomes import StopReason


class StopSignal:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._requested = False

    def stop(self) -> None:
        """SIGTERM, systemd stop, the end of a test: stop pulling, hand everything back."""
        self._requested = True
        self._event.set()

    def drain(self) -> None:
        """A spot notice or the terminating state: stop pulling; the drain policy decides the running job."""
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking when the signal is set; True when it is."""
        return self._event.wait(seconds)

    @property
    def reason(self) -> StopReason:
        """How a job claimed ahead of the signal goes back."""
        return StopReason.STOP if self._requested else StopReason.DRAIN
