"""Local mode's stand-in for the two webhook Lambdas: the same handlers, fed the way AWS feeds them.

``StreamPoller`` reads the job table's stream from the local AWS endpoint (moto implements DynamoDB
Streams) and hands batches to ``runtime.functions.webhook_dispatch.StreamHandler`` like the stream event source
mapping does; ``SenderPool`` receives from the deliveries queue with several threads (Lambda's
concurrency) and hands each message to ``SenderHandler``, deleting it unless it reported a failure
(ReportBatchItemFailures). A hanging receiver holds one sender thread for the send timeout only.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from runtime.functions.webhook_dispatch import SenderHandler, StreamHandler

log = logging.getLogger(__name__)


class StreamPoller:
    def __init__(self, dynamodb: Any, streams: Any, table: str, handler: StreamHandler, poll_s: float = 0.1) -> None:
        self.streams, self.handler, self.poll_s = streams, handler, poll_s
        self.stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-stream", daemon=True)

    def start(self) -> StreamPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _iterators(self) -> list[str]:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        return [self.streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=s["ShardId"],
                                                ShardIteratorType="TRIM_HORIZON")["ShardIterator"] for s in shards]

    def _run(self) -> None:
        iterators: list[str] = []
        while not self._stop.is_set():
            try:
                iterators = iterators or self._iterators()
                fresh = []
                for it in iterators:
                    resp = self.streams.get_records(ShardIterator=it, Limit=100)
                    if resp["Records"]:
                        self.handler.handle({"Records": resp["Records"]})
                    fresh.append(resp.get("NextShardIterator") or it)
                iterators = fresh
            except Exception as exc:  # noqa: BLE001 - like the event source mapping: retry the batch later
                log.warning("webhook stream poll failed (retrying): %s", exc)
                iterators = []
                self._stop.wait(1.0)
            self._stop.wait(self.poll_s)


class SenderPool:
    def __init__(self, sqs: Any, queue_url: str, handler: SenderHandler, concurrency: int = 16) -> None:
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"webhook-sender-{i}", daemon=True)
                         for i in range(concurrency)]

    def start(self) -> SenderPool:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                resp = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1,
                                                AttributeNames=["ApproximateReceiveCount"])
                for m in resp.get("Messages", []):
                    record = {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                              "attributes": m.get("Attributes", {})}
                    if not self.handler.handle({"Records": [record]})["batchItemFailures"]:
                        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            except Exception as exc:  # noqa: BLE001 - keep sending; the queue keeps the message
                log.warning("webhook sender poll failed (retrying): %s", exc)
                self._stop.wait(1.0)


class LocalWebhookDispatcher:
    """Both halves, wired to the local endpoint; ``start()`` / ``stop()``."""

    def __init__(self, *, dynamodb: Any, streams: Any, sqs: Any, table: str, queue_url: str, sender: Any,
                 base_url: str = "", concurrency: int = 16) -> None:
        self.poller = StreamPoller(dynamodb, streams, table, StreamHandler(sqs, queue_url, base_url))
        self.pool = SenderPool(sqs, queue_url, SenderHandler(sender, sqs, queue_url), concurrency)

    def start(self) -> LocalWebhookDispatcher:
        self.poller.start()
        self.pool.start()
        return self

    def stop(self) -> None:
        self.poller.stop()
        self.pool.stop()
