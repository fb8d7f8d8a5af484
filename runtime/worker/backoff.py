"""Infrastructure backoff: after failures of AWS or the disk in a row, the loop pauses before the next job."""

from __future__ import annotations

from runtime.worker.stop_signal import StopSignal

INFRA_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 20.0)  # pause after consecutive infrastructure failures


class InfraBackoff:
    def __init__(self, stop: StopSignal, steps: tuple[float, ...] = INFRA_BACKOFF_S) -> None:
        self._stop, self._steps = stop, steps
        self._failures = 0
        self._pause_s = steps[0]
        self._pause_next = False

    def failed(self) -> float:
        """One more infrastructure failure in a row; returns the seconds to hold the job back."""
        delay = self._steps[min(self._failures, len(self._steps) - 1)]
        self._failures += 1
        self._pause_s = delay
        return delay

    def troubled(self) -> None:
        """A job ended in infrastructure trouble: pause before the next one."""
        self._pause_next = True

    def recovered(self) -> None:
        self._failures = 0

    def pause_if_troubled(self) -> None:
        if self._pause_next:
            self._pause_next = False
            self._stop.wait(self._pause_s)
