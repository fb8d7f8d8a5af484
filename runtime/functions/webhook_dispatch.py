"""Webhook delivery, decoupled from workers and API calls (invariant 4): two small Lambda handlers.

::

    job table stream ──> stream_handler ──> deliveries queue (one message per webhook, payload captured)
                                                 │
                                                 ▼
                                          sender_handler ──> receiver
                                                 │ retryable failure: visible again after a backoff
                                                 ▼ (after the queue's maxReceiveCount)
                                          deliveries DLQ (kept 14 days)

Per-endpoint isolation: every delivery is its own message and its own short try (``SEND_TIMEOUT_S``
caps the whole try, the receiver's answer included, and at most ``MAX_REPLY_BYTES`` of that answer is
read: runtime.webhooks), at most ``MAX_IN_FLIGHT_PER_HOST`` tries to one host run at once, and a host
whose last try timed out, could not connect, or answered too slowly or too much is not tried again for
a while (``EndpointBreaker``): its deliveries wait in the queue, so a misbehaving receiver holds at most
that many senders for one capped try each and never delays another customer's webhooks or a job.
Retries and backoff live in the queue (ChangeMessageVisibility), not in a sleeping process. Receivers
deduplicate on ``Webhook-Id`` (delivery is at least once).

The opt-in ``progress`` webhook has its own stream half (``ProgressStreamHandler``: the event table's stream,
marked events only) feeding the same queue and senders.

Environment: GENAI_WEBHOOK_QUEUE_URL (deliveries queue), GENAI_API_URL (links in payloads), GENAI_JOB_TABLE
(the progress half reads the job),
GENAI_WEBHOOK_SECRET_PARAMETER (SSM SecureString; GENAI_WEBHOOK_SECRET in local mode),
GENAI_AWS_ENDPOINT_URL (moto / local mode), GENAI_ALLOW_LOOPBACK_URLS (local mode only),
GENAI_OUTPUTS_BASE_URL, GENAI_OUTPUT_URL_TTL_SECONDS, GENAI_OUTPUT_SIGNING_KEY_ID and
GENAI_OUTPUT_SIGNING_KEY_PARAMETER (the output links the sender makes and signs at send time, issue 43).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from runtime.functions import environment
from runtime.functions.webhook_events import Delivery, deliveries, progress_delivery
from runtime.functions.webhooks import WebhookSender, load_secret_from_ssm
from runtime.jobs.cdn_signing import KEY_ID_VARIABLE, KEY_PARAMETER_VARIABLE
from runtime.jobs.cdn_signing import output_links as cdn_output_links
from runtime.jobs.output_links import DEFAULT_TTL_SECONDS, OutputLinks
from runtime.jobs.store import JobStore

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0
MAX_IN_FLIGHT_PER_HOST = 2  # senders one receiver host may hold at once (per process)
BACKOFF_S = (2, 10, 30, 60, 120, 300, 600, 900)  # by receive count; SQS caps visibility at 12 h


class StreamHandler:
    """Turns stream records into delivery messages (batched SendMessageBatch, at most 10 per call)."""

    def __init__(self, sqs: Any, queue_url: str, base_url: str = "") -> None:
        self.sqs, self.queue_url, self.base_url = sqs, queue_url, base_url

    def handle(self, event: Mapping[str, Any]) -> int:
        batch: list[Delivery] = []
        for record in event.get("Records", []):
            change = record.get("dynamodb") or {}
            batch.extend(deliveries(change.get("OldImage"), change.get("NewImage"), self.base_url))
        return _queue(self.sqs, self.queue_url, batch)


def _queue(sqs: Any, queue_url: str, batch: list[Delivery]) -> int:
    """Send deliveries to the queue, 10 per SendMessageBatch; raise when any failed (the stream batch is retried,
    and receivers deduplicate on Webhook-Id)."""
    for start in range(0, len(batch), 10):
        chunk = batch[start:start + 10]
        resp = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "MessageBody": d.to_json()} for i, d in enumerate(chunk)])
        if resp.get("Failed"):
            raise RuntimeError(f"could not queue {len(resp['Failed'])} webhook deliveries: {resp['Failed']}")
    return len(batch)


class ProgressStreamHandler:
    """The event table's stream (marked progress events only, by the mapping's filter) -> deliveries queue.
    One GetItem of the job per marked event: its webhook, its filter, and whether it already ended."""

    def __init__(self, sqs: Any, queue_url: str, jobs: Any, base_url: str = "") -> None:
        self.sqs, self.queue_url, self.jobs, self.base_url = sqs, queue_url, jobs, base_url

    def handle(self, event: Mapping[str, Any]) -> int:
        batch: list[Delivery] = []
        for record in event.get("Records", []):
            new = (record.get("dynamodb") or {}).get("NewImage")
            job_id = ((new or {}).get("job_id") or {}).get("S")
            if not job_id:
                continue
            delivery = progress_delivery(new, self.jobs.get(job_id), self.base_url)
            if delivery is not None:
                batch.append(delivery)
        return _queue(self.sqs, self.queue_url, batch)


class EndpointBreaker:
    """Per receiver host: after a try that timed out, could not connect, or got a reply over the time or size
    cap, further deliveries to that host wait (through the queue) instead of holding a sender for another
    capped try; and at most ``max_in_flight`` tries to one host run at once. Per process, so each Lambda
    instance learns on its own; that bounds the damage of a misbehaving receiver to about one try each."""

    def __init__(self, open_s: float = 30.0, clock: Any = time.monotonic,
                 max_in_flight: int = MAX_IN_FLIGHT_PER_HOST) -> None:
        self.open_s, self._clock, self._open_until = open_s, clock, {}
        self.max_in_flight, self._in_flight = max_in_flight, {}
        self._lock = threading.Lock()

    def allows(self, url: str) -> bool:
        with self._lock:
            return self._open_until.get(_host(url), 0.0) <= self._clock()

    def acquire(self, url: str) -> bool:
        """Take one of the host's try slots: False while its breaker is open or its slots are taken."""
        host = _host(url)
        with self._lock:
            if self._open_until.get(host, 0.0) > self._clock() or self._in_flight.get(host, 0) >= self.max_in_flight:
                return False
            self._in_flight[host] = self._in_flight.get(host, 0) + 1
            return True

    def release(self, url: str) -> None:
        """Give the host's try slot back (``record`` says how the try went)."""
        host = _host(url)
        with self._lock:
            left = self._in_flight.get(host, 0) - 1
            if left > 0:
                self._in_flight[host] = left
            else:
                self._in_flight.pop(host, None)

    def record(self, url: str, transport_failure: bool) -> None:
        with self._lock:
            if transport_failure:
                self._open_until[_host(url)] = self._clock() + self.open_s
            else:
                self._open_until.pop(_host(url), None)


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


class SenderHandler:
    """Sends one try per delivery message; reports the retryable failures back to the queue."""

    def __init__(self, sender: WebhookSender, sqs: Any, queue_url: str, links: OutputLinks,
                 breaker: EndpointBreaker | None = None) -> None:
        self.sender, self.sqs, self.queue_url, self.links = sender, sqs, queue_url, links
        self.breaker = breaker or EndpointBreaker()

    def handle(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        failures = []
        for record in event.get("Records", []):
            if not self._send(record):
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    def _send(self, record: Mapping[str, Any]) -> bool:
        """True when the message is done with (delivered, or a final refusal); False to retry it."""
        try:
            delivery = Delivery.from_json(record["body"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropping a malformed delivery message %s: %s", record.get("messageId"), exc)
            return True
        if self.breaker.acquire(delivery.url):
            try:
                # output links made (signed) now, at each try, not when the stream captured the change
                result, retry = self.sender.try_once(delivery.url, delivery.event, self.links.resolve(delivery.job),
                                                     delivery.webhook_id)
            finally:
                self.breaker.release(delivery.url)
            self.breaker.record(delivery.url, transport_failure=result.trips_breaker)
            if result.delivered or not retry:
                return True
        receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
        delay = BACKOFF_S[min(receives, len(BACKOFF_S)) - 1]
        try:
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"],
                                               VisibilityTimeout=delay)
        except Exception as exc:  # noqa: BLE001 - the queue's own visibility timeout retries it anyway
            log.warning("could not delay the retry of %s: %s", delivery.webhook_id, exc)
        return False


_cached: dict[str, Any] = {}


def output_links(env: Mapping[str, str]) -> OutputLinks:
    """The sender's output links: the CDN's base URL, the links' lifetime and the signing key, from its
    environment (runtime/jobs/cdn_signing.py)."""
    return cdn_output_links(env.get("GENAI_OUTPUTS_BASE_URL", ""), env.get(KEY_ID_VARIABLE),
                            env.get(KEY_PARAMETER_VARIABLE), lambda: environment.client("ssm"),
                            int(env.get("GENAI_OUTPUT_URL_TTL_SECONDS") or DEFAULT_TTL_SECONDS))


def stream_handler(event: Mapping[str, Any], _context: Any = None) -> dict[str, Any]:
    """Lambda entry: DynamoDB stream of the job table -> deliveries queue."""
    if "stream" not in _cached:
        _cached["stream"] = StreamHandler(environment.client("sqs"), os.environ["GENAI_WEBHOOK_QUEUE_URL"],
                                          os.environ.get("GENAI_API_URL", "").rstrip("/"))
    return {"queued": _cached["stream"].handle(event)}


def progress_stream_handler(event: Mapping[str, Any], _context: Any = None) -> dict[str, Any]:
    """Lambda entry: the event table's stream (marked progress events) -> deliveries queue (issue 38)."""
    if "progress" not in _cached:
        jobs = JobStore(os.environ["GENAI_JOB_TABLE"], environment.client("dynamodb"))
        _cached["progress"] = ProgressStreamHandler(environment.client("sqs"), os.environ["GENAI_WEBHOOK_QUEUE_URL"],
                                                    jobs, os.environ.get("GENAI_API_URL", "").rstrip("/"))
    return {"queued": _cached["progress"].handle(event)}


def sender_handler(event: Mapping[str, Any], _context: Any = None) -> dict[str, Any]:
    """Lambda entry: deliveries queue -> receivers (ReportBatchItemFailures)."""
    if "sender" not in _cached:
        secret = os.environ.get("GENAI_WEBHOOK_SECRET")
        if not secret:
            secret = load_secret_from_ssm(environment.client("ssm"),
                                          os.environ["GENAI_WEBHOOK_SECRET_PARAMETER"]).decode()
        allow_loopback = os.environ.get("GENAI_ALLOW_LOOPBACK_URLS", "").lower() == "true"
        sender = WebhookSender(secret, allow_loopback=allow_loopback, max_attempts=1, timeout_s=SEND_TIMEOUT_S)
        _cached["sender"] = SenderHandler(sender, environment.client("sqs"), os.environ["GENAI_WEBHOOK_QUEUE_URL"],
                                          output_links(os.environ))
    return _cached["sender"].handle(event)
