"""The queue interfaces shared by the API (producer side) and the worker agent (consumer side).

Message body (docs/CONTRACTS.md), UTF-8 JSON::

    {"v": 1, "job_id": "j_...", "enqueued_at": 1767225600.123, "job": <normalized job spec>}

SQS: a standard queue, redrive to the DLQ after ``maxReceiveCount``; message attributes ``model`` and
``task`` (strings) are added for future per-model routing. Kafka: topic ``genai-jobs``, key = job id,
header ``v`` = ``1``. Delivery is at least once on both: the worker makes redelivery harmless through
the job store's conditional transitions (``start_attempt`` counts and fences, ``mark_succeeded`` is final-once).

Errors::

    QueueError
     ├── QueueUnavailableError   the broker / SQS could not be reached or refused the write (HTTP 503)
     └── MessageFormatError      a received body is not a v1 job message (consumer: dead-letter it)
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MESSAGE_VERSION = 1
# SQS MaximumMessageSize the stack declares (components/request_queue.py) and the API sizes jobs against;
# kept here, free of boto imports, so the Pulumi program can read it.
SQS_MAX_MESSAGE_BYTES = 262_144


class QueueError(Exception):
    """Base class of queue errors."""


class QueueUnavailableError(QueueError):
    """Sending or receiving failed for a reason outside the message (network, throttling, auth)."""


class MessageFormatError(QueueError):
    """A message body that is not a valid v1 job message."""


@dataclass(frozen=True)
class QueueMessage:
    """One job on the queue."""

    job_id: str
    job: Mapping[str, Any]
    enqueued_at: float = field(default_factory=time.time)
    v: int = MESSAGE_VERSION

    def to_json(self) -> str:
        return json.dumps({"v": self.v, "job_id": self.job_id, "enqueued_at": self.enqueued_at,
                           "job": dict(self.job)}, separators=(",", ":"), sort_keys=True,
                          allow_nan=False)

    @classmethod
    def from_json(cls, body: str | bytes) -> QueueMessage:
        try:
            data = json.loads(body)
        except (ValueError, TypeError) as exc:
            raise MessageFormatError(f"message body is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("v") != MESSAGE_VERSION:
            version = data.get("v") if isinstance(data, dict) else None
            raise MessageFormatError(f"unsupported message version {version!r}")
        job_id, job, enqueued_at = data.get("job_id"), data.get("job"), data.get("enqueued_at")
        if not isinstance(job_id, str) or not isinstance(job, dict) or not isinstance(enqueued_at, int | float):
            raise MessageFormatError("message must carry job_id (string), job (object) and enqueued_at (number)")
        return cls(job_id=job_id, job=job, enqueued_at=float(enqueued_at))


@dataclass(frozen=True)
class QueueDepth:
    """What the API shows clients as queue position / wait estimate (approximate by nature)."""

    waiting: int  # messages not yet picked up
    in_flight: int | None = None  # messages being worked on (SQS: not visible)
    oldest_enqueued_at: float | None = None  # epoch seconds of the oldest waiting message (None: not known cheaply)


@dataclass
class ReceivedJob:
    """A message handed to a worker. ``handle`` is opaque to callers (SQS receipt handle, Kafka
    (partition, offset), fake id); ``receive_count`` is the 1-based delivery attempt."""

    message: QueueMessage
    handle: Any
    receive_count: int = 1
    raw: Any = None


class JobQueueProducer(ABC):
    """API side: put jobs on the queue."""

    #: The largest message the broker takes, in bytes as ``message_size`` counts them (None: no limit known).
    max_message_bytes: int | None = None

    def message_size(self, message: QueueMessage) -> int:
        """Bytes the broker counts for ``message`` exactly as ``send`` would send it (default: the body)."""
        return len(message.to_json().encode("utf-8"))

    @abstractmethod
    def send(self, message: QueueMessage) -> str:
        """Enqueue one job; return the broker's message id. Raise ``QueueUnavailableError`` on failure
        (after the client's own bounded retries): the API then answers 503 and drops the job record."""

    def approximate_depth(self) -> QueueDepth | None:
        """Approximate backlog, or None when the queue kind cannot tell cheaply (default)."""
        return None

    def queue_depths(self) -> dict[str, QueueDepth | None]:
        """Each queue's backlog by name, for ``GET /v1/fleet`` (issue 43; default: this one queue, ``jobs``)."""
        return {"jobs": self.approximate_depth()}

    def close(self) -> None:
        """Flush and release connections (default: nothing to do)."""
        return None


class JobQueueConsumer(ABC):
    """Worker side (implemented by the worker agent for SQS and Kafka; ``memory.InMemoryQueue`` fakes it).

    Semantics every implementation keeps:
    - ``receive`` long-polls up to ``wait_seconds`` and returns at most ``max_messages`` jobs; each stays
      invisible to other workers until ``ack``, ``release`` or its visibility runs out.
    - ``extend`` is the heartbeat while a job runs (SQS ChangeMessageVisibility).
    - ``ack`` removes a job for good (after the record is final). ``release`` hands it back for another
      worker (drain / spot interruption) after ``delay_seconds``.
    - A job received more than the queue's max receive count goes to the dead-letter queue (SQS redrive;
      Kafka: the consumer writes it to the DLQ topic), never silently dropped.
    - ``supports_prefetch``: the consumer can hold more than one unsettled message (the agent receives the
      next job while one runs); False makes the agent receive only after the previous job is settled.
    - ``dead_letter``: a job whose record failed it for good after its last attempt. Default: acknowledge
      (the record holds the failure; SQS's redrive takes what a worker never settles); Kafka writes it to
      its DLQ topic.
    - ``note_loaded``: the backend holds this model now (model affinity). Default: nothing.
    - Bodies that fail ``QueueMessage.from_json`` raise ``MessageFormatError`` from ``parse``; the
      consumer dead-letters them.
    """

    supports_prefetch: bool = True

    @abstractmethod
    def receive(self, max_messages: int = 1, wait_seconds: float = 20.0) -> Sequence[ReceivedJob]:
        ...

    @abstractmethod
    def ack(self, job: ReceivedJob) -> None:
        ...

    @abstractmethod
    def release(self, job: ReceivedJob, delay_seconds: int = 0) -> None:
        ...

    @abstractmethod
    def extend(self, job: ReceivedJob, visibility_seconds: int) -> None:
        ...

    def dead_letter(self, job: ReceivedJob, reason: str) -> None:
        """The job failed for good after its last attempt (the record says so)."""
        self.ack(job)

    def note_loaded(self, model: str | None) -> None:  # noqa: B027 - optional hook
        """The worker's backend holds ``model`` now (model affinity)."""

    def close(self) -> None:
        """Stop polling and release connections."""
        return None

    @staticmethod
    def parse(body: str | bytes) -> QueueMessage:
        return QueueMessage.from_json(body)
