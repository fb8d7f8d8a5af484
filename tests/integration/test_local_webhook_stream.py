"""Local mode's webhook stream reader against moto's DynamoDB Streams (issue 29, item 8).

The cause of "the stream reader was alive but saw no records; a fresh reader saw them": moto answers a
failed TransactWriteItems by putting back a deep copy of the table, stream shard included, so a shard
iterator taken before the failure keeps reading a shard nothing writes to any more. The job table has
failed transactions in normal use (a reused Idempotency-Key, a lost race), so the reader went blind after
the first one. The first test pins that moto behaviour; the others hold the reader to seeing every record.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from fleetdev.local.webhook_dispatcher import StreamPoller
from runtime.jobs.store import create_table

pytestmark = pytest.mark.integration
WAIT_S = 20.0  # a deadline, not a pause: the tests return as soon as the records arrive


class Recorder:
    """Stands in for StreamHandler: remembers each record's key; can fail the next batch once."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.fail_next = False
        self.changed = threading.Condition()

    def handle(self, event):
        with self.changed:
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("SendMessageBatch failed")
            self.keys += [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]
            self.changed.notify_all()
        return len(event["Records"])

    def wait_for(self, *keys: str) -> list[str]:
        deadline = time.monotonic() + WAIT_S
        with self.changed:
            while not set(keys) <= set(self.keys) and time.monotonic() < deadline:
                self.changed.wait(0.2)
            return list(self.keys)


@pytest.fixture
def table(aws_clients):
    name = f"jobs-{uuid.uuid4().hex[:10]}"
    create_table(aws_clients("dynamodb"), name)
    return name


def _put(ddb, table, pk):
    ddb.put_item(TableName=table, Item={"pk": {"S": pk}, "status": {"S": "queued"}})


def _failed_transaction(ddb, table, existing_pk) -> str:
    """What JobStore.create does with an Idempotency-Key that is already taken: the job's Put is canceled with
    the transaction. Returns the canceled job's key."""
    canceled = f"canceled#{uuid.uuid4().hex}"
    with pytest.raises(ClientError) as info:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": canceled}}}},
            {"Put": {"TableName": table, "Item": {"pk": {"S": existing_pk}},
                     "ConditionExpression": "attribute_not_exists(pk)"}}])
    assert info.value.response["Error"]["Code"] == "TransactionCanceledException"
    return canceled


def test_moto_detaches_earlier_shard_iterators_when_a_transaction_fails(aws_clients, table):
    """The stand-in's behaviour the reader must survive (moto 5: transact_write_items restores a deep copy):
    an iterator from before the failure reads the canceled write, then nothing, and the copy gives the next
    real record the sequence number the canceled write had."""
    ddb, streams = aws_clients("dynamodb"), aws_clients("dynamodbstreams")
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    _put(ddb, table, "job#a")
    old = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    first = streams.get_records(ShardIterator=old)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in first["Records"]] == ["job#a"]
    canceled = _failed_transaction(ddb, table, "job#a")
    _put(ddb, table, "job#b")
    followed = streams.get_records(ShardIterator=first["NextShardIterator"])
    phantom = [(r["dynamodb"]["Keys"]["pk"]["S"], r["dynamodb"]["SequenceNumber"]) for r in followed["Records"]]
    assert [pk for pk, _ in phantom] == [canceled]  # the canceled write, which AWS never streams
    assert streams.get_records(ShardIterator=followed["NextShardIterator"])["Records"] == []  # then blind
    fresh = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    now = [(r["dynamodb"]["Keys"]["pk"]["S"], r["dynamodb"]["SequenceNumber"])
           for r in streams.get_records(ShardIterator=fresh["ShardIterator"])["Records"]]
    assert [pk for pk, _ in now] == ["job#a", "job#b"]
    assert now[1][1] == phantom[0][1]  # job#b reuses the canceled write's sequence number


def test_the_reader_sees_records_written_after_a_failed_transaction(aws_clients, table):
    ddb = aws_clients("dynamodb")
    recorder = Recorder()
    poller = StreamPoller(ddb, aws_clients("dynamodbstreams"), table, recorder, poll_s=0.05).start()
    try:
        _put(ddb, table, "job#1")
        assert "job#1" in recorder.wait_for("job#1")
        for i in range(2, 9):  # seven due webhooks, each after a canceled transaction (the run that lost 7 of 7)
            _failed_transaction(ddb, table, "job#1")
            _put(ddb, table, f"job#{i}")
        seen = recorder.wait_for(*(f"job#{i}" for i in range(1, 9)))
    finally:
        poller.stop()
    # Each job once, in order. A canceled write the reader happened to read in the instant before moto put the
    # table back may show up too (moto streams it; AWS does not): never a loss, and never a job twice.
    jobs = [k for k in seen if k.startswith("job#")]
    assert jobs == [f"job#{i}" for i in range(1, 9)]


def test_a_failed_batch_is_read_again_from_the_checkpoint_not_from_the_start(aws_clients, table):
    ddb = aws_clients("dynamodb")
    recorder = Recorder()
    poller = StreamPoller(ddb, aws_clients("dynamodbstreams"), table, recorder, poll_s=0.05).start()
    try:
        _put(ddb, table, "job#1")
        recorder.wait_for("job#1")
        recorder.fail_next = True
        _put(ddb, table, "job#2")
        seen = recorder.wait_for("job#2")
    finally:
        poller.stop()
    assert seen == ["job#1", "job#2"]  # job#2 retried; job#1 not delivered a second time
