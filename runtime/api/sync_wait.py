"""When a sync request (``Prefer: wait=N``) reads the job record next: polling paced by the job's expected end.

The waiting request reads the record (one strongly consistent GetItem, 1 read request unit for a record
under 4 KB) at times chosen from what the record says:

- queued: every ``expected / 4`` (50 ms to 1 s): pick-up is quick when workers are idle;
- running, with an expected run time for its model: sleep until just before ``last_started_at + expected``,
  then read every ``FAST_S`` (25 ms) for ``max(0.25 s, expected / 2)``, then back off (a quarter of the
  overrun, at most 1 s): the answer comes within ~10 ms plus a read of the final write in the common case;
- running, no estimate yet (a fresh process): 50 ms growing by 1.5x up to 1 s.

The expected run time is learnt in this process from the records it sees become final
(``completed_at - last_started_at``: run plus settle, as the client sees it), per job shape (model, steps,
size, outputs: a 20-step job must not wait for the 50-step average) and per model as the fallback; a Lambda
container keeps it between invocations. docs/api.md has the read cost of this choice at 100 sync requests/s.
"""

from __future__ import annotations

import threading
from typing import Any

FAST_S = 0.01  # read interval around the expected end (a read itself takes a few ms on AWS)
FIRST_S = 0.05  # first read after the create, and the start of the no-estimate schedule
MAX_S = 1.0
FINAL = ("succeeded", "failed", "canceled")


class WaitPacer:
    """Per-model expected run time (EWMA) and the delay before the next read of a waiting request."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self._expected: dict[str, float] = {}
        self._lock = threading.Lock()

    def expected(self, record: dict[str, Any]) -> float | None:
        with self._lock:
            for key in _keys(record):
                if key in self._expected:
                    return self._expected[key]
        return None

    def observe(self, record: dict[str, Any]) -> None:
        """Learn from a record that became final (succeeded only: failures and cancels end early)."""
        if record.get("status") != "succeeded":
            return
        try:
            seconds = float(record["completed_at"]) - float(record["last_started_at"])
        except (KeyError, TypeError, ValueError):
            return
        if not 0 < seconds < 3600:
            return
        with self._lock:
            for key in _keys(record):
                old = self._expected.get(key)
                self._expected[key] = seconds if old is None else (1 - self.alpha) * old + self.alpha * seconds

    def next_delay(self, record: dict[str, Any] | None, now: float, previous: float | None) -> float:
        """Seconds to sleep before the next read; ``previous`` is the last delay (None before the first read)."""
        if record is None or previous is None:
            return FIRST_S
        expected = self.expected(record)
        if record.get("status") == "queued" or not record.get("last_started_at"):
            return _clamp((expected or 0.2) / 4, FIRST_S, MAX_S)
        if expected is None:
            return _clamp(previous * 1.5, FIRST_S, MAX_S)
        remaining = float(record["last_started_at"]) + expected - now
        if remaining > FAST_S:
            return min(MAX_S, remaining)
        overrun = -remaining
        if overrun < max(0.15, expected / 4):
            return FAST_S
        return _clamp(overrun / 4, FAST_S, MAX_S)


def _keys(record: dict[str, Any]) -> tuple[str, ...]:
    """The job's shape (what its run time depends on), then its model alone."""
    model = str(record.get("model") or "")
    spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
    inputs = spec.get("inputs") if isinstance(spec.get("inputs"), dict) else {}
    shape = "|".join(str(inputs.get(k)) for k in ("steps", "width", "height", "num_outputs", "frames"))
    return (f"{model}|{spec.get('task')}|{shape}", model)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
