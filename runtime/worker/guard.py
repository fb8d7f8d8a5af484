"""The lease guard: keeps a running attempt's claim alive and notices when it is gone.

While an attempt runs, every third of the lease it renews both the queue message's visibility and
the record's lease (``renew_lease``, fenced on the attempt's token), and every ``poll_seconds`` it
reads the record: a cancel request interrupts the attempt, and a record that another attempt took
over (or that became final) means this attempt lost its lease: it must stop and discard its outputs
(invariant 2). A failing dependency is logged and retried on the next tick, never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from runtime.jobs.errors import StoreUnavailableError
from runtime.queues.base import JobQueueConsumer, QueueError, ReceivedJob
from runtime.worker.outcomes import StopReason

log = logging.getLogger(__name__)


def stop_reason(record: dict[str, Any] | None, lease: int) -> StopReason | None:
    """Whether the attempt holding ``lease`` must stop, from its job's record: the one place that asks
    "does the record still name my lease" (the guard every tick, the job's checkpoints between phases)."""
    if record is None or int(record.get("lease") or 0) != lease or record.get("status") != "running":
        canceled = record is not None and record.get("status") == "canceled"
        return StopReason.CANCEL if canceled else StopReason.LOST_LEASE
    if record.get("cancel_requested"):
        return StopReason.CANCEL
    return None


class LeaseGuard:
    def __init__(self, *, consumer: JobQueueConsumer, store: Any, received: ReceivedJob, job_id: str, lease: int,
                 lease_seconds: float, poll_seconds: float, on_cancel: Callable[[], None],
                 on_lost: Callable[[str], None], on_beat: Callable[[], None] | None = None) -> None:
        self.consumer, self.store, self.received = consumer, store, received
        self.job_id, self.lease, self.lease_seconds = job_id, lease, lease_seconds
        self.beat_seconds = max(0.5, lease_seconds / 3)
        self.poll_seconds = max(0.1, min(self.beat_seconds, poll_seconds))
        self.on_cancel, self.on_lost, self.on_beat = on_cancel, on_lost, on_beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def start(self) -> LeaseGuard:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (the job is settled); idempotent, callable from the settle lane."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def __enter__(self) -> LeaseGuard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        next_beat = time.monotonic() + self.beat_seconds
        while not self._stop.wait(self.poll_seconds):
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.beat_seconds
                if not self._beat():
                    return
            if not self._check_record():
                return

    def _beat(self) -> bool:
        try:
            self.consumer.extend(self.received, round(self.lease_seconds))
        except QueueError as exc:
            log.warning("heartbeat (queue) for %s failed: %s", self.job_id, exc)
        try:
            if not self.store.attempts.renew_lease(self.job_id, self.lease, self.lease_seconds):
                self.on_lost("the record's lease was taken by another attempt or the job became final")
                return False
        except StoreUnavailableError as exc:
            log.warning("heartbeat (record) for %s failed: %s", self.job_id, exc)
        if self.on_beat is not None:
            self.on_beat()
        return True

    def _check_record(self) -> bool:
        try:
            record = self.store.get(self.job_id)
        except StoreUnavailableError as exc:
            log.warning("reading %s failed: %s", self.job_id, exc)
            return True
        reason = stop_reason(record, self.lease)
        if reason is None:
            return True
        if reason is StopReason.CANCEL:
            self.on_cancel()
        else:
            self.on_lost("the record no longer names this attempt")
        return False
