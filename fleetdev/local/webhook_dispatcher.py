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
import time
from typing import Any

from runtime.functions.webhook_dispatch import SenderHandler, StreamHandler
from runtime.jobs.output_links import OutputLinks

log = logging.getLogger(__name__)

SHARDS_EVERY_S = 2.0  # how stale the poller's shard list may be (an empty one is described at every poll)


class StreamPoller:
    """Reads every shard of the job table's stream from a checkpoint: the last record handled (its sequence
    number and eventID), re-read at the start of each poll to prove the shard is still the one it came from.

    Why (issue 29, item 8: the reader was alive but saw no records, a fresh reader saw them): moto answers a
    failed TransactWriteItems by putting back a deep copy of the table taken before it
    (moto/dynamodb/models/__init__.py, ``transact_write_items``), stream shard included. An iterator taken
    before then reads the detached old shard: it sees the canceled transaction's writes and then nothing,
    and the copy numbers its next records with the sequence numbers those canceled writes had. The job
    table has failed transactions in normal use (an Idempotency-Key already taken, a lost race), so an
    iterator that was only ever followed went blind after the first one. Here each poll re-takes the
    iterator AT the checkpoint: when the record there is not the one handled, the shard was swapped, and
    the shard is read again from the start, skipping the records already handled (by eventID). That
    costs nothing against real DynamoDB Streams, where iterators expire after 15 minutes anyway.
    A batch the handler fails is read again from the same checkpoint, never from the start of the stream.
    """

    def __init__(self, dynamodb: Any, streams: Any, table: str, handler: StreamHandler, poll_s: float = 0.1) -> None:
        self.streams, self.handler, self.poll_s = streams, handler, poll_s
        self.stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.checkpoints: dict[str, tuple[str, str]] = {}  # shard id -> (sequence number, eventID) last handled
        self.handled: set[str] = set()  # eventIDs handled (local mode: bounded by the run's records)
        self.resyncs = 0  # shards found swapped under their checkpoint
        # The shard list, described again at most every SHARDS_EVERY_S: a swap keeps its shard id (the resync
        # below handles it), and describing it at every poll was a third of the local AWS's stream calls
        self._shards: list[dict[str, Any]] = []
        self._described_at = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-stream", daemon=True)

    def start(self) -> StreamPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _iterator(self, shard_id: str, at: str | None) -> str:
        kwargs = ({"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": at} if at
                  else {"ShardIteratorType": "TRIM_HORIZON"})
        return self.streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard_id, **kwargs)["ShardIterator"]

    def poll_once(self) -> int:
        """Read every shard from its checkpoint until it has nothing new; the number of records handled."""
        handled = 0
        for shard in self._shard_list():
            shard_id = shard["ShardId"]
            checkpoint = self.checkpoints.get(shard_id)
            resp = self.streams.get_records(ShardIterator=self._iterator(shard_id, checkpoint and checkpoint[0]),
                                            Limit=100)
            records = resp["Records"]
            if checkpoint is not None:
                if not records or records[0]["eventID"] != checkpoint[1]:
                    self.resyncs += 1
                    log.info("webhook stream: shard %s changed under its checkpoint; reading it again", shard_id)
                    resp = self.streams.get_records(ShardIterator=self._iterator(shard_id, None), Limit=100)
                    records = resp["Records"]
                    if not records:
                        self.checkpoints.pop(shard_id)
                else:
                    records = records[1:]
            while records and not self._stop.is_set():
                handled += self._handle(shard_id, records)
                iterator = resp.get("NextShardIterator")
                if not iterator:
                    break  # a closed shard (real streams): its children are in the next describe
                resp = self.streams.get_records(ShardIterator=iterator, Limit=100)
                records = resp["Records"]
        return handled

    def _shard_list(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        if not self._shards or now - self._described_at >= SHARDS_EVERY_S:
            self._shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
            self._described_at = now
        return self._shards

    def _handle(self, shard_id: str, records: list[dict[str, Any]]) -> int:
        fresh = [r for r in records if r["eventID"] not in self.handled]
        if fresh:
            self.handler.handle({"Records": fresh})  # raises: the checkpoint stays, the batch is read again
            self.handled.update(r["eventID"] for r in fresh)
        last = records[-1]
        self.checkpoints[shard_id] = (last["dynamodb"]["SequenceNumber"], last["eventID"])
        return len(fresh)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - like the event source mapping: retry the batch later
                log.warning("webhook stream poll failed (retrying): %s", exc)
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
                 links: OutputLinks, base_url: str = "", concurrency: int = 16) -> None:
        self.poller = StreamPoller(dynamodb, streams, table, StreamHandler(sqs, queue_url, base_url))
        self.pool = SenderPool(sqs, queue_url, SenderHandler(sender, sqs, queue_url, links), concurrency)

    def start(self) -> LocalWebhookDispatcher:
        self.poller.start()
        self.pool.start()
        return self

    def stop(self) -> None:
        self.poller.stop()
        self.pool.stop()
