"""SQS producer: one SendMessage per job on the standard queue (redrive to the DLQ is the queue's job).

``approximate_depth`` reads ApproximateNumberOfMessages (waiting) and ...NotVisible (in flight) and
caches them for ``depth_cache_seconds`` so a burst of status polls costs one GetQueueAttributes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.queues.base import JobQueueProducer, QueueDepth, QueueMessage, QueueUnavailableError

log = logging.getLogger(__name__)


class SqsJobProducer(JobQueueProducer):
    def __init__(self, queue_url: str, client: Any, depth_cache_seconds: float = 5.0):
        self.queue_url = queue_url
        self.client = client
        self.depth_cache_seconds = depth_cache_seconds
        self._depth: tuple[float, QueueDepth] | None = None
        self._lock = threading.Lock()

    def send(self, message: QueueMessage) -> str:
        attributes = {name: {"DataType": "String", "StringValue": str(message.job[name])}
                      for name in ("model", "task") if message.job.get(name)}
        try:
            resp = self.client.send_message(QueueUrl=self.queue_url, MessageBody=message.to_json(),
                                            MessageAttributes=attributes)
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailableError(f"SQS SendMessage failed for {message.job_id}: {exc}") from exc
        return resp["MessageId"]

    def approximate_depth(self) -> QueueDepth | None:
        with self._lock:
            if self._depth and time.monotonic() - self._depth[0] < self.depth_cache_seconds:
                return self._depth[1]
        try:
            attrs = self.client.get_queue_attributes(
                QueueUrl=self.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        except (ClientError, BotoCoreError) as exc:
            log.warning("queue depth unavailable: %s", exc)
            return None
        depth = QueueDepth(waiting=int(attrs.get("ApproximateNumberOfMessages", 0)),
                           in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)))
        with self._lock:
            self._depth = (time.monotonic(), depth)
        return depth
