"""SQS producer: one SendMessage per job on the standard queue (redrive to the DLQ is the queue's job).

``approximate_depth`` reads ApproximateNumberOfMessages (waiting) and ...NotVisible (in flight) and
caches them for ``depth_cache_seconds`` so a burst of status polls costs one GetQueueAttributes. A cached
depth adds the messages this producer sent since it was read (issue 44: admission control reads the depth at
every create, and a burst must see itself, not a 5 s old queue); other API instances' sends show at the next
read.

``SQS_MAX_MESSAGE_BYTES`` is the queue's ``MaximumMessageSize`` (declared by components/request_queue.py;
moto defaults to 1 MiB, so local mode and tests set it explicitly). SQS counts the body's UTF-8 bytes
plus each message attribute's name, data type and value; ``message_size`` counts the same way so the
API can refuse a job that would not fit before it writes anything.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.queues.base import (
    SQS_MAX_MESSAGE_BYTES,
    JobQueueProducer,
    QueueDepth,
    QueueMessage,
    QueueUnavailableError,
)

log = logging.getLogger(__name__)


class SqsJobProducer(JobQueueProducer):
    def __init__(self, queue_url: str, client: Any, depth_cache_seconds: float = 5.0):
        self.queue_url = queue_url
        self.client = client
        self.depth_cache_seconds = depth_cache_seconds
        self._depth: tuple[float, QueueDepth] | None = None
        self._lock = threading.Lock()
        self._refreshing = False
        self._sent_since_read = 0  # messages this producer sent since ``_depth`` was read

    max_message_bytes = SQS_MAX_MESSAGE_BYTES

    @staticmethod
    def _attributes(message: QueueMessage) -> dict[str, dict[str, str]]:
        return {name: {"DataType": "String", "StringValue": str(message.job[name])}
                for name in ("model", "task") if message.job.get(name)}

    def message_size(self, message: QueueMessage) -> int:
        size = len(message.to_json().encode("utf-8"))
        for name, attr in self._attributes(message).items():
            size += len(name.encode()) + len(attr["DataType"].encode()) + len(attr["StringValue"].encode())
        return size

    def send(self, message: QueueMessage) -> str:
        attributes = self._attributes(message)
        try:
            resp = self.client.send_message(QueueUrl=self.queue_url, MessageBody=message.to_json(),
                                            MessageAttributes=attributes)
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailableError(f"SQS SendMessage failed for {message.job_id}: {exc}") from exc
        with self._lock:
            self._sent_since_read += 1
        return resp["MessageId"]

    def approximate_depth(self) -> QueueDepth | None:
        with self._lock:
            if self._depth and (time.monotonic() - self._depth[0] < self.depth_cache_seconds or self._refreshing):
                cached = self._depth[1]  # fresh, or another request is refreshing it: one call, not a stampede
                return QueueDepth(waiting=cached.waiting + self._sent_since_read, in_flight=cached.in_flight)
            self._refreshing = True
        try:
            return self._read_depth()
        finally:
            with self._lock:
                self._refreshing = False

    def _read_depth(self) -> QueueDepth | None:
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
            self._sent_since_read = 0
        return depth
