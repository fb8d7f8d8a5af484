"""Progress of the running attempts, written to the event log off the backend's path (issue 38).

The backend calls ``JobContext.report`` (a sink made here per attempt) as often as it likes: per sampler step,
per frame. The sink only takes a lock and compares two numbers; it never writes, waits or raises. It keeps an
event only when the job entered a new stage or a new ``EVENT_PERCENT_STEP`` bucket (runtime.jobs.progress),
so an attempt keeps a bounded number of events however many steps it has, and every other report is
coalesced into the latest figure (``latest``). One flush thread writes each attempt's kept events in one
BatchWriteItem at most every ``interval_s``, in cursor order; a write that fails is logged and tried again
at the next flush, never raised into a job.

A job whose webhook subscribes to ``progress`` (``begin(notify_progress=True)``) gets some of its progress events
marked ``notify`` (runtime.jobs.events.NOTIFY_ATTRIBUTE): the first, then none sooner than
``PROGRESS_WEBHOOK_INTERVAL_S`` after the last marked one. The event table's stream passes only marked items
to the webhook function (components/job_events.py), so the rate bound is kept here, where the events are made.

``begin`` opens an attempt (its first event is the ``running`` status, cursor ``<lease>.000000``);
``close`` (the settlement, before the final write) stops its reports and writes what is left, so every event
of an attempt is stored before the record says it ended: the API shows the final status after them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from runtime.jobs.events import NOTIFY_ATTRIBUTE, NOTIFY_PROGRESS, PROGRESS_WEBHOOK_INTERVAL_S, EventLog, make_cursor
from runtime.jobs.progress import Progress
from runtime.worker.preview_uploader import PreviewUploader

log = logging.getLogger(__name__)

MAX_PENDING = 200  # events kept per attempt while the log cannot be written (the oldest go first)


@dataclass
class _Attempt:
    job_id: str
    lease: int
    number: int
    began: float
    seq: int = 0
    stage: str | None = None
    bucket: int = -2
    stage_since: float = 0.0
    latest: Progress | None = None
    closed: bool = False
    notify: bool = False  # the job's webhook wants ``progress`` events
    notified_at: float = float("-inf")  # when the last one was marked (monotonic)
    pending: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # state
    writing: threading.Lock = field(default_factory=threading.Lock)  # one write at a time, in order


class ProgressReporter:
    def __init__(self, events: EventLog, *, interval_s: float = 0.5, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, previews: PreviewUploader | None = None) -> None:
        self._events, self._interval_s = events, interval_s
        self.previews = previews  # jobs with "preview": true (runtime/worker/preview_uploader.py); None: none
        if previews is not None:
            previews.attach(self.note)
        self._clock, self._monotonic = clock, monotonic
        self._attempts: dict[tuple[str, int], _Attempt] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.writes = 0  # BatchWriteItem calls made (tests, bench)

    # -- the agent's side -----------------------------------------------------------------------------
    def begin(self, job_id: str, lease: int, attempt: int,
              notify_progress: bool = False) -> Callable[[Progress], None]:
        """Open an attempt: its ``running`` status event, and the sink its backend reports to.
        ``notify_progress``: the job's webhook subscribes to ``progress`` (marked events, rate-limited)."""
        att = _Attempt(job_id, lease, attempt, began=self._monotonic(), notify=notify_progress)
        with self._lock:
            self._attempts[(job_id, lease)] = att
            self._start()
        self._keep(att, "status", {"status": "running"})
        return lambda progress: self._report(att, progress)

    def report(self, job_id: str, lease: int, progress: Progress) -> None:
        """A report from the agent itself (stages outside the backend call: loading-model, uploading)."""
        att = self._attempts.get((job_id, lease))
        if att is not None:
            self._report(att, progress)

    def preview_sink(self, job_id: str, lease: int) -> Any:
        """The attempt's preview sink (a job with ``"preview": true``), or None where previews are not set up."""
        return None if self.previews is None else self.previews.begin(job_id, lease)

    def note(self, job_id: str, lease: int, kind: str, data: dict[str, Any]) -> bool:
        """An event of another part (a ``preview``) for an open attempt; False when the attempt has ended."""
        att = self._attempts.get((job_id, lease))
        if att is None:
            return False
        with att.lock:
            if att.closed:
                return False
            self._append(att, kind, data)
        self._wake.set()
        return True

    def close(self, job_id: str, lease: int, timeout_s: float = 5.0) -> bool:
        """No more events for this attempt; write what is left (on the caller's thread). False: some could not."""
        if self.previews is not None:
            self.previews.end(job_id, lease)
        with self._lock:
            att = self._attempts.pop((job_id, lease), None)
        if att is None:
            return True
        with att.lock:
            att.closed = True
        return self._flush(att, timeout_s)

    def latest(self, job_id: str, lease: int) -> Progress | None:
        att = self._attempts.get((job_id, lease))
        return None if att is None else att.latest

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self.previews is not None:
            self.previews.stop()

    # -- the backend's side: cheap, never raises --------------------------------------------------------
    def _report(self, att: _Attempt, progress: Progress) -> None:
        now = self._monotonic()
        with att.lock:
            if att.closed:
                return  # no events after the attempt ended
            new_stage = progress.stage != att.stage
            if new_stage:
                att.stage, att.stage_since, att.bucket = progress.stage, now, -2
            done = progress.fraction()
            if done and done < 1.0 and progress.eta_s is None and now > att.stage_since:
                progress = replace(progress, eta_s=(now - att.stage_since) * (1 - done) / done)
            att.latest = progress
            bucket = progress.bucket()
            if not new_stage and bucket <= att.bucket:
                return  # coalesced: the next kept event carries the figure
            att.bucket = bucket
            self._append(att, "progress", progress.as_dict())
            if att.notify and now - att.notified_at >= PROGRESS_WEBHOOK_INTERVAL_S:
                att.notified_at = now
                att.pending[-1][NOTIFY_ATTRIBUTE] = NOTIFY_PROGRESS

    def _keep(self, att: _Attempt, kind: str, data: dict[str, Any]) -> None:
        with att.lock:
            self._append(att, kind, data)

    def _append(self, att: _Attempt, kind: str, data: dict[str, Any]) -> None:
        att.pending.append({"cursor": make_cursor(att.lease, att.seq), "kind": kind, "attempt": att.number,
                            "at": round(self._clock(), 3), "data": data})
        att.seq += 1
        if len(att.pending) > MAX_PENDING:
            del att.pending[0]

    # -- the flush thread -----------------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._interval_s)
            with self._lock:
                attempts = list(self._attempts.values())
            for att in attempts:
                self._flush(att, timeout_s=0.0)

    def _flush(self, att: _Attempt, timeout_s: float) -> bool:
        if not att.writing.acquire(timeout=timeout_s) if timeout_s > 0 else not att.writing.acquire(blocking=False):
            return False
        try:
            with att.lock:
                batch = list(att.pending)
            if not batch:
                return True
            try:
                self._events.append(att.job_id, batch)
                self.writes += 1
            except Exception as exc:  # noqa: BLE001 - progress never fails a job
                log.warning("job %s: %d progress event(s) not written yet: %s", att.job_id, len(batch), exc)
                return False
            with att.lock:
                written = {e["cursor"] for e in batch}
                att.pending = [e for e in att.pending if e["cursor"] not in written]
            return True
        finally:
            att.writing.release()
