"""Webhook events from record changes and their delivery handlers (runtime/functions: webhook_events,
webhook_dispatch)."""

from __future__ import annotations

import json

import httpx

from runtime.functions.webhook_dispatch import BACKOFF_S, EndpointBreaker, SenderHandler, StreamHandler
from runtime.functions.webhook_events import Delivery, deliveries, transitions
from runtime.functions.webhooks import WebhookSender
from runtime.jobs.output_links import OutputLinks
from runtime.jobs.store import new_record, serialize

LINKS = OutputLinks("https://cdn.example.com")  # public links (issue 43: made at send time)

SPEC = {"model": "m", "task": "txt2img", "inputs": {"prompt": "x"}, "webhook": "https://hooks.example.com/h",
        "webhook_events_filter": ["start", "output", "completed"]}


def image(**fields):
    record = {**new_record(SPEC, owner="k", now=1000.0, job_id="j_01"), **fields}
    item = dict(record, pk=f"job#{record['job_id']}", spec=json.dumps(record["spec"]))
    item.pop("job_id")
    return serialize(item)


def test_each_transition_yields_its_events_once():
    queued, running = image(), image(status="running", started_at=1001.0, attempts=1)
    done = image(status="succeeded", started_at=1001.0, completed_at=1003.0, updated_at=1003.0,
                 outputs=[{"key": "outputs/x.png", "content_type": "image/png"}])
    assert [d.event for d in deliveries(None, queued)] == []
    assert [d.event for d in deliveries(queued, running)] == ["start"]
    assert [d.event for d in deliveries(running, running)] == []  # a lease renewal is no event
    events = deliveries(running, done, base_url="https://api.example.com")
    assert [d.event for d in events] == ["output", "completed"]
    assert events[1].webhook_id == "j_01.completed" and events[1].job["status"] == "succeeded"
    assert events[1].job["urls"]["get"] == "https://api.example.com/v1/jobs/j_01"
    # A second start after a hand-back is not a second 'start' (started_at was already set).
    assert transitions({"started_at": 1001.0, "status": "queued"}, {"started_at": 1001.0, "status": "running"}) == []


def test_filter_and_missing_webhook_send_nothing():
    spec = dict(SPEC, webhook_events_filter=["completed"])
    old = serialize({"pk": "job#j_02", "status": "queued", "spec": json.dumps(spec)})
    new = serialize({"pk": "job#j_02", "status": "running", "started_at": 1.0, "spec": json.dumps(spec)})
    assert deliveries(old, new) == []
    nohook = serialize({"pk": "job#j_03", "status": "canceled", "spec": json.dumps(dict(SPEC, webhook=None))})
    assert deliveries(None, nohook) == []
    assert deliveries(None, serialize({"pk": "quota#k#2026-01-01", "used": 1})) == []


class FakeSQS:
    def __init__(self):
        self.sent, self.visibility = [], []

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 - boto3's names
        self.sent += [e["MessageBody"] for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def change_message_visibility(self, QueueUrl, ReceiptHandle, VisibilityTimeout):  # noqa: N803
        self.visibility.append((ReceiptHandle, VisibilityTimeout))


def test_stream_handler_queues_payloads_captured_at_the_change():
    sqs = FakeSQS()
    queued, running = image(), image(status="running", started_at=1001.0, updated_at=1001.0)
    n = StreamHandler(sqs, "q").handle({"Records": [{"dynamodb": {"OldImage": queued, "NewImage": running}}]})
    assert n == 1
    sent = Delivery.from_json(sqs.sent[0])
    assert (sent.event, sent.job["status"], sent.at) == ("start", "running", 1001.0)


def _sender(statuses: dict[str, int], resolver=None):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(statuses.get(request.url.path, 200))

    return WebhookSender("secret", allow_loopback=True, max_attempts=1, transport=httpx.MockTransport(handler),
                         resolver=resolver or (lambda host, port: ["93.184.216.34"]))


def _record(path: str, receives: int = 1, mid: str = "m1"):
    delivery = Delivery(url=f"https://hooks.example.com{path}", event="completed", webhook_id="j.completed",
                        job={"id": "j", "status": "succeeded"}, at=1.0)
    return {"messageId": mid, "receiptHandle": f"rh-{mid}", "body": delivery.to_json(),
            "attributes": {"ApproximateReceiveCount": str(receives)}}


def test_sender_retries_through_the_queue_with_backoff_and_isolates_endpoints():
    sqs = FakeSQS()
    handler = SenderHandler(_sender({"/down": 503, "/gone": 410}), sqs, "q", LINKS)
    result = handler.handle({"Records": [_record("/ok", mid="a"), _record("/down", receives=3, mid="b"),
                                         _record("/gone", mid="c")]})
    assert result == {"batchItemFailures": [{"itemIdentifier": "b"}]}  # only the retryable one comes back
    assert sqs.visibility == [("rh-b", BACKOFF_S[2])]  # its third try waits longer; nobody else waits


def test_sender_refuses_private_addresses_for_good():
    sqs = FakeSQS()
    handler = SenderHandler(_sender({}, resolver=lambda host, port: ["169.254.169.254"]), sqs, "q", LINKS)
    assert handler.handle({"Records": [_record("/x")]}) == {"batchItemFailures": []}  # final refusal, no retry
    assert sqs.visibility == []


def test_a_host_that_timed_out_is_not_tried_again_while_its_breaker_is_open():
    tries = []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(request.url.path)
        if request.url.path == "/hang":
            raise httpx.ReadTimeout("receiver hangs", request=request)
        return httpx.Response(204)

    now = [0.0]
    sender = WebhookSender("secret", max_attempts=1, transport=httpx.MockTransport(handler),
                           resolver=lambda host, port: ["93.184.216.34"])
    handler_ = SenderHandler(sender, FakeSQS(), "q", LINKS, breaker=EndpointBreaker(open_s=30, clock=lambda: now[0]))
    first = handler_.handle({"Records": [_record("/hang", mid="a"), _record("/hang", mid="b")]})
    assert first["batchItemFailures"] == [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]
    assert tries == ["/hang"]  # the second delivery to the hanging host waited instead of timing out too
    now[0] = 31.0
    handler_.handle({"Records": [_record("/hang", mid="c")]})
    assert tries == ["/hang", "/hang"]  # tried again once the breaker closed
