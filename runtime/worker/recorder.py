"""What the agent keeps of each settled pick-up: stats, the busy fraction, the switch metric, one log line.

Once a minute (``emit_busy``) it also reports the fleet overhead of that window: the instance's seconds spent
outside any attempt (idle), and what they cost at the instance's price (``OverheadSeconds`` / ``OverheadCost``,
kind ``idle``); an attempt's own time is in its job's cost (runtime.jobs.cost), never in the overhead.

Every path of a job ends in ``record`` exactly once (on the loop's thread or a settle lane), so the drain
estimate, the infrastructure backoff and the ``BackendBusy`` metric see every job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runtime import metric_names as m
from runtime.worker.backoff import InfraBackoff
from runtime.worker.metrics import Metrics
from runtime.worker.outcomes import Outcome
from runtime.worker.prices import Price
from runtime.worker.running_job import RunningJob

log = logging.getLogger(__name__)

BUSY_WINDOW_S = 60.0


@dataclass
class JobStat:
    job_id: str
    outcome: Outcome
    handle_s: float  # pick-up to settled
    backend_s: float  # time inside the backend call (the first job of a batch carries the call's time)
    timings: dict[str, float] | None = None  # per phase, ms (receive, mark running, inputs, model, run, ...)
    run_span: tuple[float, float] | None = None  # monotonic start and end of the backend call


class JobRecorder:
    def __init__(self, *, metrics: Metrics, worker_id: str, backoff: InfraBackoff,
                 on_success: Callable[[float], None], price: Callable[[], Price] | None = None) -> None:
        self._metrics, self._worker_id, self._backoff = metrics, worker_id, backoff
        self._on_success = on_success  # the drain policy's job-time estimate
        self._price = price  # the instance's price now (runtime.worker.prices): the overhead's dollars
        self._lock = threading.Lock()
        self.stats: list[JobStat] = []
        self._busy_s = 0.0
        self._attempt_s = 0.0  # claimed attempts' pick-up to settled, this window
        self._busy_since = time.monotonic()

    def record(self, job_id: str, outcome: Outcome, picked: float, backend_s: float, timings: dict[str, float],
               job: RunningJob | None = None) -> Outcome:
        elapsed = time.monotonic() - picked
        if outcome is Outcome.SUCCEEDED:
            self._on_success(elapsed)
        if outcome.troubled:
            self._backoff.troubled()
        else:
            self._backoff.recovered()
        with self._lock:
            self._busy_s += backend_s
            if job is not None:
                self._attempt_s += elapsed
            self.stats.append(JobStat(job_id, outcome, elapsed, backend_s, dict(timings),
                                      job.run_span if job is not None else None))
        if job is None:
            return outcome
        if job.switched and "model_load_ms" in timings:
            self._metrics.emit({m.MODEL_SWITCH_TIME: timings["model_load_ms"]},
                               {"worker_id": self._worker_id, "model": job.ctx.model})
        log.info("job %s %s", job_id, outcome, extra={"job_id": job_id, "attempt": job.attempt.number,
                                                     "lease": job.attempt.lease, "outcome": str(outcome),
                                                     "timings": timings})
        return outcome

    def emit_busy(self, force: bool = False) -> None:
        """The backend's busy percentage over the last window (at most once a minute unless forced)."""
        with self._lock:
            window = time.monotonic() - self._busy_since
            if window < BUSY_WINDOW_S and not force:
                return
            busy, self._busy_s, self._busy_since = self._busy_s, 0.0, time.monotonic()
            attempts, self._attempt_s = self._attempt_s, 0.0
        if window > 0:
            self._metrics.emit({m.BACKEND_BUSY: min(100.0, 100.0 * busy / window)}, {"worker_id": self._worker_id})
            self.emit_overhead("idle", max(0.0, window - attempts))

    def emit_overhead(self, kind: str, seconds: float) -> None:
        """Instance time outside any attempt (``idle``, ``boot``) and its dollars, as fleet overhead."""
        values = {m.OVERHEAD_SECONDS: round(seconds, 3)}
        properties: dict[str, object] = {"worker_id": self._worker_id}
        if self._price is not None:
            price = self._price()
            values[m.OVERHEAD_COST] = round(seconds * price.hourly_usd / 3600.0, 6)
            properties.update(instance_type=price.instance_type, purchase_option=price.purchase_option)
        self._metrics.emit(values, properties, dimensions={m.DIM_KIND: kind})
