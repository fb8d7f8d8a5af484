"""Issue 38: the opt-in ``progress`` webhook. The worker marks some progress events of a job that subscribed (the
first, then at most one every ``PROGRESS_WEBHOOK_INTERVAL_S`` per attempt); the event table's stream carries the
marked items to ``ProgressStreamHandler``, which queues one delivery per item unless the job ended or unsubscribed.
"""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import pytest

from fleetdev.local.webhook_dispatcher import StreamPoller
from runtime.functions.webhook_dispatch import ProgressStreamHandler
from runtime.functions.webhook_events import Delivery, progress_delivery
from runtime.jobs.errors import ValidationError
from runtime.jobs.events import PROGRESS_WEBHOOK_INTERVAL_S, EventLog, create_events_table
from runtime.jobs.items import serialize
from runtime.jobs.progress import Progress
from runtime.jobs.schema import JobSpec, validate_job
from runtime.jobs.store import JobStore, create_table, new_record
from runtime.worker.progress_reporter import ProgressReporter

SPEC = {"model": "m", "task": "txt2img", "inputs": {"prompt": "x"}, "webhook": "https://hooks.example.com/h",
        "webhook_events_filter": ["progress", "completed"]}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Captured:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def append(self, job_id: str, events: list[dict[str, Any]]) -> None:
        self.events.extend(events)


def _run(notify: bool, seconds_per_step: float = 1.0, steps: int = 30) -> list[dict[str, Any]]:
    log, clock = Captured(), Clock()
    reporter = ProgressReporter(log, interval_s=3600, clock=clock, monotonic=clock)
    sink = reporter.begin("j_1", lease=3, attempt=1, notify_progress=notify)
    for step in range(1, steps + 1):
        clock.t += seconds_per_step
        sink(Progress(step=step, steps=steps))
    reporter.close("j_1", 3)
    reporter.stop()
    return log.events


# -- the worker's side: which events are marked ------------------------------------------------------------
def test_a_subscribed_job_gets_its_first_progress_marked_then_at_most_one_per_interval():
    events = _run(notify=True)
    progress = [e for e in events if e["kind"] == "progress"]
    marked = [e for e in progress if e.get("notify") == "progress"]
    assert len(progress) == 11 and marked[0] is progress[0]  # 11 buckets kept, the first one sent at once
    # 30 s of run: one at t=1 then one per 5 s at most
    times = [m["data"]["step"] for m in marked]  # one step per second here
    assert all(b - a >= PROGRESS_WEBHOOK_INTERVAL_S for a, b in itertools.pairwise(times)), times
    assert 5 <= len(marked) <= 1 + 30 / PROGRESS_WEBHOOK_INTERVAL_S
    assert all("notify" not in e for e in events if e["kind"] != "progress")  # never the running status


def test_a_fast_job_sends_one_progress_webhook_and_an_unsubscribed_job_none():
    fast = _run(notify=True, seconds_per_step=0.05)  # a 1.5 s job
    assert sum(e.get("notify") == "progress" for e in fast) == 1
    assert not any("notify" in e for e in _run(notify=False))


# -- the stream's side: one delivery per marked item -------------------------------------------------------
def _record(**fields: Any) -> dict[str, Any]:
    return {**new_record(SPEC, owner="k", now=1000.0, job_id="j_1"), "status": "running", **fields}


def _image(notify: bool = True, kind: str = "progress") -> dict[str, Any]:
    item = {"job_id": "j_1", "cursor": "000003.000004", "kind": kind, "attempt": 1, "at": 1004.5,
            "data": {"stage": "running", "step": 9, "steps": 30, "percent": 30.0}, "expires_at": 2000}
    if notify:
        item["notify"] = "progress"
    return serialize(item)


def test_a_marked_event_of_a_running_subscribed_job_is_one_delivery():
    d = progress_delivery(_image(), _record(), base_url="https://api.example.com")
    assert isinstance(d, Delivery) and d.event == "progress" and d.url == SPEC["webhook"]
    assert d.webhook_id == "j_1.progress.000003.000004"  # one per event: receivers deduplicate on it
    assert d.job["status"] == "running" and d.job["urls"]["get"] == "https://api.example.com/v1/jobs/j_1"
    assert d.job["progress"] == {"cursor": "000003.000004", "kind": "progress", "attempt": 1, "at": 1004.5,
                                 "stage": "running", "step": 9, "steps": 30, "percent": 30.0}
    assert Delivery.from_json(d.to_json()) == d


@pytest.mark.parametrize("why, image, record", [
    ("unmarked", _image(notify=False), _record()),
    ("a status event", _image(kind="status"), _record()),
    ("the job ended meanwhile", _image(), _record(status="succeeded")),
    ("not subscribed", _image(), _record(spec={**SPEC, "webhook_events_filter": ["completed"]})),
    ("no webhook", _image(), _record(spec={**SPEC, "webhook": None})),
    ("the job is gone", _image(), None),
])
def test_no_delivery(why, image, record):
    assert progress_delivery(image, record) is None, why


class FakeSQS:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 - boto3's names
        self.sent += [e["MessageBody"] for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


class Jobs:
    def __init__(self, record: dict[str, Any]) -> None:
        self.record, self.reads = record, 0

    def get(self, job_id: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.record if job_id == self.record["job_id"] else None


def test_the_handler_queues_marked_events_and_reads_the_job_once_each():
    sqs, jobs = FakeSQS(), Jobs(_record())
    records = [{"eventName": "INSERT", "dynamodb": {"NewImage": _image()}},
               {"eventName": "INSERT", "dynamodb": {"NewImage": _image(notify=False)}},
               {"eventName": "REMOVE", "dynamodb": {}}]  # a TTL delete: no image
    assert ProgressStreamHandler(sqs, "q", jobs).handle({"Records": records}) == 1
    assert [json.loads(b)["event"] for b in sqs.sent] == ["progress"]
    assert jobs.reads == 2


def test_through_the_local_aws_a_marked_write_reaches_the_deliveries_queue(aws_clients):
    """The event table as local mode makes it has a stream, and a marked append is read from it."""
    ddb, sqs = aws_clients("dynamodb"), aws_clients("sqs")
    table, jobs_table = f"ev-{uuid.uuid4().hex[:8]}", f"jobs-{uuid.uuid4().hex[:8]}"
    create_events_table(ddb, table)
    create_table(ddb, jobs_table)
    store = JobStore(jobs_table, ddb)
    store.create(_record(status="queued"))
    ddb.update_item(TableName=jobs_table, Key={"pk": {"S": "job#j_1"}}, UpdateExpression="SET #s = :r",
                    ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":r": {"S": "running"}})
    queue = sqs.create_queue(QueueName=f"hooks-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    EventLog(table, ddb).append("j_1", [
        {"cursor": "000001.000000", "kind": "status", "attempt": 1, "at": 1.0, "data": {"status": "running"}},
        {"cursor": "000001.000001", "kind": "progress", "attempt": 1, "at": 2.0, "notify": "progress",
         "data": {"stage": "running", "step": 3, "steps": 30, "percent": 10.0}},
        {"cursor": "000001.000002", "kind": "progress", "attempt": 1, "at": 3.0,
         "data": {"stage": "running", "step": 6, "steps": 30, "percent": 20.0}}])
    poller = StreamPoller(ddb, aws_clients("dynamodbstreams"), table, ProgressStreamHandler(sqs, queue, store))
    assert poller.poll_once() == 3
    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
    assert [(b["event"], b["webhook_id"], b["job"]["progress"]["percent"]) for b in bodies] == [
        ("progress", "j_1.progress.000001.000001", 10.0)]


# -- the request: progress is a known, opt-in event --------------------------------------------------------
def test_progress_is_accepted_in_the_filter_and_off_by_default():
    spec = validate_job(SPEC)
    assert spec["webhook_events_filter"] == ["completed", "progress"]
    assert JobSpec.parse(SPEC).wants("progress")
    assert not JobSpec.parse({k: v for k, v in SPEC.items() if k != "webhook_events_filter"}).wants("progress")
    with pytest.raises(ValidationError):
        validate_job({**SPEC, "webhook_events_filter": ["progres"]})
