"""The backend as the agent's parts share it: which jobs are on it, stopping them, its model, its readiness.

One accelerator, one call at a time: ``occupy`` marks the jobs of the call (a batch of one or more) for its
duration. ``interrupt`` is the one way any part stops a job (cancel, drain, stop, lost lease): it records why
on the job, and asks the backend to stop only while the job is on it (a job being settled is past the
backend; its settle's checkpoint stops it). A drain or stop of one job of a call stops the whole call: its
jobs share one backend call and all go back.

A backend that did not stop work it was told to stop (its ``restart_needed`` hook: a node that ignores
interrupts) is restarted after the call, before the next one is sent: ``restart`` runs the agent's restart
command (runtime/worker/backend_restart.py) and waits until the backend answers again, all within
``restart_timeout_s``. When it cannot be brought back within that bound the agent is unhealthy
(``unrecoverable``): the health probe withholds the heartbeat and the instance is marked unhealthy, the
existing path to its replacement.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from runtime import metric_names as m
from runtime.backends.base import Backend, BackendError, BackendUnavailable
from runtime.worker.metrics import Metrics
from runtime.worker.outcomes import StopReason
from runtime.worker.running_job import RunningJob
from runtime.worker.stop_signal import StopSignal

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 300.0  # how often leftovers of attempts are swept off the backend (between calls)
# A leftover this old belongs to no running attempt: an attempt's inputs are uploaded before its start wait and its
# run (each at most the largest time limit, 3600 s).
SWEEP_OLDER_THAN_S = 3 * 3600.0


class BackendSupervisor:
    def __init__(self, backend: Backend, *, metrics: Metrics, worker_id: str, ready_timeout_s: float,
                 stop: StopSignal, on_model: Callable[[str], None], restart: Callable[[], None] | None = None,
                 restart_timeout_s: float = 180.0, on_unrecoverable: Callable[[str], None] | None = None) -> None:
        self.backend = backend
        self._restart, self._restart_timeout_s = restart, restart_timeout_s
        self._on_unrecoverable = on_unrecoverable
        self.unrecoverable: str | None = None  # why the backend could not be brought back (health reads it)
        self.restarts: list[float] = []  # seconds each restart took until the backend answered
        self._swept = time.monotonic()  # the first sweep comes SWEEP_EVERY_S after the start
        self._metrics, self._worker_id = metrics, worker_id
        self._ready_timeout_s, self._stop = ready_timeout_s, stop
        self._on_model = on_model  # the consumer's model-affinity hook
        self._lock = threading.Lock()
        self._ok = True
        self.on_backend: tuple[RunningJob, ...] = ()
        self.loaded_model: str | None = None

    @property
    def current(self) -> RunningJob | None:
        """The first job of the call on the backend (the one the drain policy and health look at)."""
        jobs = self.on_backend
        return jobs[0] if jobs else None

    @contextlib.contextmanager
    def occupy(self, jobs: Sequence[RunningJob]) -> Iterator[None]:
        now = time.monotonic()
        for job in jobs:
            job.started = now
        self.on_backend = tuple(jobs)
        try:
            yield
        finally:
            self.on_backend = ()

    def interrupt(self, job: RunningJob, reason: StopReason) -> None:
        with self._lock:
            if job.reason is None or reason.overrides:
                job.reason = reason
        on_backend = self.on_backend
        if job not in on_backend:
            return
        try:
            self.backend.interrupt(job.ctx)
        except BackendError as exc:
            log.warning("interrupting %s: %s", job.job_id, exc)
        if reason.hands_back and job is on_backend[0]:  # one backend call: the batch goes back whole
            for other in on_backend[1:]:
                self.interrupt(other, reason)

    # -- readiness ------------------------------------------------------------------------------------
    def lost(self) -> None:
        """The backend answered as down: wait for it before the next job."""
        self._ok = False

    def ensure_ready(self) -> None:
        if self._ok:
            return
        try:
            self.backend.wait_ready(self._ready_timeout_s)
            self._ok = True
        except BackendUnavailable as exc:
            log.error("backend still unavailable: %s", exc)
            self._stop.wait(5.0)

    def after_call(self) -> None:
        """After a call, before the next: restart the backend when it holds work it was told to stop, and now and
        then sweep what attempts left on it (``SWEEP_EVERY_S``; leftovers older than ``SWEEP_OLDER_THAN_S``)."""
        why = self.backend.restart_needed()
        if why is not None:
            self.restart(why)
        now = time.monotonic()
        if now - self._swept >= SWEEP_EVERY_S:
            self._swept = now
            try:
                self.backend.sweep(SWEEP_OLDER_THAN_S)
            except Exception:
                log.exception("backend sweep failed")

    def restart(self, why: str) -> bool:
        """Restart the backend's service and wait until it answers; False (and unhealthy) when it cannot."""
        log.error("restarting the backend: %s", why)
        started = time.monotonic()
        if self._restart is None:
            return self._give_up(f"{why}; the agent config names no backend_restart_command")
        try:
            self._restart()
            self.backend.wait_ready(max(1.0, self._restart_timeout_s - (time.monotonic() - started)))
        except BackendError as exc:
            return self._give_up(f"{why}; restart failed: {exc}")
        took = time.monotonic() - started
        self.restarts.append(took)
        self._ok = True
        log.warning("backend answering again %.1f s after its restart", took, extra={"restart_seconds": round(took, 1)})
        return True

    def _give_up(self, reason: str) -> bool:
        self.unrecoverable = reason
        log.error("backend cannot be brought back: %s", reason)
        if self._on_unrecoverable is not None:
            self._on_unrecoverable(reason)
        return False

    # -- model affinity ---------------------------------------------------------------------------------
    def note_model(self, model: str | None) -> bool:
        """The backend loads ``model`` for the next call: tell the consumer; True when that is a switch."""
        if not model:
            return False
        previous, self.loaded_model = self.loaded_model, model
        self._on_model(model)
        if previous is None or previous == model:
            return False
        self._metrics.count(m.MODEL_SWITCHES, worker_id=self._worker_id, model=model, previous=previous)
        return True
