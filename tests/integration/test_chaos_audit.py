"""The chaos audit sees what invariant 2 forbids (issue 33): a second final write (read from the job table's
stream, even when both writes carry the same timestamps), objects under the recorded attempt's prefix the record
does not point at (deleted since or not), writes after the final write, and fenced-out attempts' late writes,
counted even when deleted. moto's S3 and DynamoDB (with its stream) as the local platform has them."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

import pytest

from fleetdev.local.audit import Ledger, late_writes_of_others, recorded_attempt_writes
from runtime.jobs.store import JobStore, new_record
from tests.unit.job_store_fixtures import SPEC

pytestmark = pytest.mark.integration


@pytest.fixture
def world(aws_clients, job_table):
    s3 = aws_clients("s3")
    bucket = f"outputs-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    resources = SimpleNamespace(job_table=job_table, outputs_bucket=bucket, dlq_url=None)
    ledger = Ledger("http://127.0.0.1:9", "unused", s3, aws_clients("dynamodb"), aws_clients("sqs"), resources,
                    streams=aws_clients("dynamodbstreams"))
    store = JobStore(job_table, aws_clients("dynamodb"))
    yield SimpleNamespace(s3=s3, bucket=bucket, ledger=ledger, store=store, ddb=aws_clients("dynamodb"),
                          table=job_table)
    ledger.close()


def _succeed(world, name: str = "a.png") -> tuple[str, int, str]:
    """One job run the way the worker runs it: claim, upload under the lease, fenced final write."""
    job_id = world.store.create(new_record(SPEC, owner="k1"))[0]["job_id"]
    attempt = world.store.attempts.start_attempt(job_id, "w1", max_attempts=3, lease_seconds=30)
    key = f"outputs/{job_id}/{attempt.lease}/{name}"
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=b"png")
    assert world.store.mark_succeeded(job_id, [{"key": key, "content_type": "image/png"}],
                                      lease=attempt.lease)
    return job_id, attempt.lease, key


def test_a_clean_job_passes(world):
    job_id, _, _ = _succeed(world)
    report = world.ledger.report([job_id])
    assert (report.succeeded, report.duplicated, report.late_writes, report.problems) == (1, 0, 0, [])


def test_a_second_final_write_with_the_same_timestamps_is_caught(world):
    job_id, _, _ = _succeed(world)
    record = world.store.get(job_id)
    # succeeded overwritten by failed, updated_at and completed_at unchanged: invisible to the timestamps
    world.ddb.update_item(TableName=world.table, Key={"pk": {"S": f"job#{job_id}"}},
                          UpdateExpression="SET #s = :f, #e = :e",
                          ExpressionAttributeNames={"#s": "status", "#e": "error"},
                          ExpressionAttributeValues={":f": {"S": "failed"},
                                                     ":e": {"M": {"code": {"S": "backend-error"}}}})
    after = world.store.get(job_id)
    assert (after["updated_at"], after["completed_at"]) == (record["updated_at"], record["completed_at"])
    report = world.ledger.report([job_id])
    assert report.duplicated == 1
    assert any("written final 2 times" in p for p in report.problems), report.problems


def test_an_unreferenced_object_under_the_recorded_attempt_is_caught_even_when_deleted(world):
    job_id, lease, _ = _succeed(world)
    stray = f"outputs/{job_id}/{lease}/b.png"
    world.s3.put_object(Bucket=world.bucket, Key=stray, Body=b"second")
    world.s3.delete_object(Bucket=world.bucket, Key=stray)
    report = world.ledger.report([job_id])
    assert report.duplicated == 1
    assert any(stray in p for p in report.problems), report.problems  # by the prefix rule or the time rule


def test_without_a_stream_the_audit_says_it_could_not_look(world, aws_clients):
    broken = Ledger("http://127.0.0.1:9", "unused", world.s3, world.ddb, aws_clients("sqs"),
                    SimpleNamespace(job_table="no-such-table", outputs_bucket=world.bucket, dlq_url=None),
                    streams=aws_clients("dynamodbstreams"))
    try:
        problems: list[str] = []
        assert broken.final_writes(problems) is None
        assert problems and "unaudited" in problems[0]
    finally:
        broken.close()


# -- the time rules on versions as S3 lists them (LastModified in whole seconds) ---------------------------
FINAL_AT = 1_800_000_000.4
RECORD = {"completed_at": FINAL_AT, "outputs": [{"url": "https://cdn.example.com/outputs/j/2/a.png"}]}


def _version(key: str, at: float, latest: bool = True) -> dict:
    return {"Key": key, "LastModified": dt.datetime.fromtimestamp(int(at), tz=dt.UTC), "IsLatest": latest}


def test_a_write_under_the_recorded_attempt_after_the_final_write_is_caught():
    before = [_version("outputs/j/2/a.png", FINAL_AT - 1)]
    assert recorded_attempt_writes(before, RECORD) is None
    rewritten = [_version("outputs/j/2/a.png", FINAL_AT + 2), _version("outputs/j/2/a.png", FINAL_AT - 1, False)]
    assert "after the final write" in recorded_attempt_writes(rewritten, RECORD)


def test_a_stray_under_the_recorded_attempt_deleted_before_the_final_write_is_caught():
    versions = [_version("outputs/j/2/a.png", FINAL_AT - 1), _version("outputs/j/2/b.png", FINAL_AT - 1, latest=False)]
    assert "does not point at" in recorded_attempt_writes(versions, RECORD)


def test_late_writes_of_fenced_out_attempts_count_even_when_deleted():
    versions = [_version("outputs/j/2/a.png", FINAL_AT - 1),
                _version("outputs/j/1/a.png", FINAL_AT + 3, latest=False),  # deleted since: a delete marker is latest
                _version("outputs/j/3/a.png", FINAL_AT + 1, latest=False),
                _version("outputs/j/1/early.png", FINAL_AT - 5, latest=False)]  # before final: not late
    assert sorted(late_writes_of_others(versions, RECORD)) == ["outputs/j/1/a.png", "outputs/j/3/a.png"]


def test_the_final_write_is_timed_by_the_table_not_by_the_workers_reading_of_its_clock():
    """``completed_at`` is the worker's estimate of AWS's clock (runtime.aws_clock, within about a second): an
    upload made just before the final write can carry a later second than it. The stream's time is the server's."""
    early = {**RECORD, "completed_at": FINAL_AT - 0.9}  # the worker's clock estimate ran 0.9 s behind
    upload = [_version("outputs/j/2/a.png", FINAL_AT - 0.3)]  # in the second after the early completed_at
    assert "after the final write" in recorded_attempt_writes(upload, early)
    assert recorded_attempt_writes(upload, early, final_at=FINAL_AT) is None
    late = [*upload, _version("outputs/j/2/a.png", FINAL_AT + 2, latest=False)]
    assert "after the final write" in recorded_attempt_writes(late, early, final_at=FINAL_AT)
    other = [_version("outputs/j/1/a.png", FINAL_AT - 0.3, latest=False)]  # a fenced-out attempt, before final
    assert late_writes_of_others(other, early) == ["outputs/j/1/a.png"]
    assert late_writes_of_others(other, early, final_at=FINAL_AT) == []
