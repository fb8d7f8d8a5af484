"""SQS consumer for the worker agent (runtime.queues.base.JobQueueConsumer).

Long polling (``WaitTimeSeconds``); each received message stays invisible for ``visibility_timeout``
and the agent's heartbeat extends it (ChangeMessageVisibility) while the job runs; ``ack`` deletes it
(only after the job record is final); ``release`` hands it back (visibility 0 = at once). The DLQ is
SQS's own redrive: a message received more than the redrive count (attempts + hand-back allowance)
moves there on its next receive, and the DLQ consumer (runtime.functions.reconciler) makes its record final. A
job the agent failed for good is simply acknowledged: its record holds the error. Bodies that are not
v1 job messages are made visible again and reach the DLQ through redrive.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.queues.base import JobQueueConsumer, MessageFormatError, QueueUnavailableError, ReceivedJob

log = logging.getLogger(__name__)


class SQSConsumer(JobQueueConsumer):
    def __init__(self, client: Any, queue_url: str, visibility_timeout: int = 360) -> None:
        self.client = client
        self.queue_url = queue_url
        self.visibility_timeout = visibility_timeout

    def _call(self, name: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, name)(QueueUrl=self.queue_url, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailableError(f"sqs {name}: {exc}") from exc

    def receive(self, max_messages: int = 1, wait_seconds: float = 20.0) -> Sequence[ReceivedJob]:
        resp = self._call("receive_message", MaxNumberOfMessages=max(1, min(max_messages, 10)),
                          WaitTimeSeconds=int(max(0, min(wait_seconds, 20))),
                          VisibilityTimeout=self.visibility_timeout,
                          MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                          MessageAttributeNames=["All"])
        jobs = []
        for msg in resp.get("Messages", []):
            count = int(msg.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            try:
                message = self.parse(msg["Body"])
            except MessageFormatError as exc:
                log.error("malformed message %s (receive %d) left for the DLQ: %s", msg.get("MessageId"), count, exc)
                self._call("change_message_visibility", ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0)
                continue
            jobs.append(ReceivedJob(message=message, handle=msg["ReceiptHandle"], receive_count=count, raw=msg))
        return jobs

    def backlog(self) -> int:
        """Messages waiting (``ApproximateNumberOfMessages``): the affinity consumer's cheap probe."""
        attrs = self._call("get_queue_attributes", AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))

    def ack(self, job: ReceivedJob) -> None:
        self._call("delete_message", ReceiptHandle=job.handle)

    def release(self, job: ReceivedJob, delay_seconds: int = 0) -> None:
        self._call("change_message_visibility", ReceiptHandle=job.handle, VisibilityTimeout=int(delay_seconds))

    def extend(self, job: ReceivedJob, visibility_seconds: int) -> None:
        self._call("change_message_visibility", ReceiptHandle=job.handle, VisibilityTimeout=int(visibility_seconds))
