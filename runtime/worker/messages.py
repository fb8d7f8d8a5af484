"""The agent's side of the queue message: acknowledge, hand back, dead-letter, each failure logged, never raised.

A failed acknowledgement is harmless (the record is final: a redelivery finds it so and is acknowledged then);
a failed hand-back leaves the message to its visibility timeout.
"""

from __future__ import annotations

import logging

from runtime.queues.base import JobQueueConsumer, QueueError, ReceivedJob

log = logging.getLogger(__name__)


class MessageActions:
    def __init__(self, consumer: JobQueueConsumer) -> None:
        self.consumer = consumer

    def ack(self, received: ReceivedJob) -> None:
        try:
            self.consumer.ack(received)
        except QueueError as exc:
            log.warning("ack of %s failed (a redelivery will be skipped): %s", received.message.job_id, exc)

    def release(self, received: ReceivedJob, delay: float, why: str) -> None:
        try:
            self.consumer.release(received, int(delay))
            log.info("job %s handed back (%s, visible in %ss)", received.message.job_id, why, int(delay))
        except QueueError as exc:
            log.error("hand back of %s failed (its lease will run out instead): %s", received.message.job_id, exc)

    def dead_letter(self, received: ReceivedJob, reason: str) -> None:
        """The job failed for good after its last attempt (its record says so)."""
        self.consumer.dead_letter(received, reason)
