"""In-memory queue for unit tests: one object is both producer and consumer, with SQS-like semantics
(visibility timeout, receive counts, dead-letter after ``max_receive_count``). Thread-safe; ``clock``
is injectable so tests can move time without sleeping.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runtime.queues.base import (
    JobQueueConsumer,
    JobQueueProducer,
    QueueDepth,
    QueueMessage,
    QueueUnavailableError,
    ReceivedJob,
)


@dataclass
class _Entry:
    message_id: str
    body: str
    visible_at: float
    receive_count: int = 0
    handle: str | None = None


class InMemoryQueue(JobQueueProducer, JobQueueConsumer):
    """Producer and consumer over a list. ``fail_sends`` makes ``send`` raise (to test the API's 503)."""

    def __init__(self, visibility_timeout: float = 30.0, max_receive_count: int = 3,
                 clock: Callable[[], float] = time.monotonic):
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self._clock = clock
        self._entries: list[_Entry] = []
        self.dead_letters: list[QueueMessage] = []
        self.sent: list[QueueMessage] = []
        self.fail_sends = False
        self._ids = itertools.count(1)
        self._cond = threading.Condition()

    # --- producer ------------------------------------------------------------------------------------
    def send(self, message: QueueMessage) -> str:
        if self.fail_sends:
            raise QueueUnavailableError("in-memory queue set to fail")
        with self._cond:
            mid = f"m-{next(self._ids)}"
            self._entries.append(_Entry(mid, message.to_json(), visible_at=self._clock()))
            self.sent.append(message)
            self._cond.notify_all()
            return mid

    def approximate_depth(self) -> QueueDepth:
        with self._cond:
            now = self._clock()
            visible = [e for e in self._entries if e.visible_at <= now]
            return QueueDepth(waiting=len(visible), in_flight=len(self._entries) - len(visible),
                              oldest_enqueued_at=min((QueueMessage.from_json(e.body).enqueued_at for e in visible),
                                                     default=None))

    # --- consumer ------------------------------------------------------------------------------------
    def _take(self, max_messages: int) -> list[ReceivedJob]:
        now, out = self._clock(), []
        for entry in list(self._entries):
            if len(out) >= max_messages:
                break
            if entry.visible_at > now:
                continue
            entry.receive_count += 1
            if entry.receive_count > self.max_receive_count:
                self._entries.remove(entry)
                self.dead_letters.append(QueueMessage.from_json(entry.body))
                continue
            entry.visible_at = now + self.visibility_timeout
            entry.handle = f"{entry.message_id}#{entry.receive_count}"
            out.append(ReceivedJob(QueueMessage.from_json(entry.body), entry.handle, entry.receive_count, entry))
        return out

    def receive(self, max_messages: int = 1, wait_seconds: float = 20.0) -> Sequence[ReceivedJob]:
        deadline = time.monotonic() + max(0.0, wait_seconds)
        with self._cond:
            while True:
                got = self._take(max_messages)
                remaining = deadline - time.monotonic()
                if got or remaining <= 0:
                    return got
                self._cond.wait(timeout=min(remaining, 0.05))

    def _find(self, job: ReceivedJob) -> _Entry | None:
        return next((e for e in self._entries if e.handle == job.handle), None)

    def ack(self, job: ReceivedJob) -> None:
        with self._cond:
            entry = self._find(job)
            if entry is not None:
                self._entries.remove(entry)

    def release(self, job: ReceivedJob, delay_seconds: int = 0) -> None:
        with self._cond:
            entry = self._find(job)
            if entry is not None:
                entry.visible_at = self._clock() + delay_seconds
                self._cond.notify_all()

    def extend(self, job: ReceivedJob, visibility_seconds: int) -> None:
        with self._cond:
            entry = self._find(job)
            if entry is not None:
                entry.visible_at = self._clock() + visibility_seconds

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)
