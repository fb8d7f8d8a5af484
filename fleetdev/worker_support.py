"""Helpers shared by the worker's integration tests and the agent benchmark (moto-backed wiring)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

from fleetdev.local.webhook_dispatcher import LocalWebhookDispatcher
from runtime.agent_config import AgentConfig, parse
from runtime.backends.base import Backend
from runtime.backends.test_pattern import TestPatternBackend
from runtime.functions.webhooks import WebhookSender
from runtime.jobs.events import EventLog, create_events_table
from runtime.jobs.output_links import OutputLinks
from runtime.jobs.schema import validate_job
from runtime.jobs.store import JobStore, create_table, new_record
from runtime.model_cache import ModelCache, manifest_resolver
from runtime.queues.base import JobQueueConsumer, QueueMessage
from runtime.queues.sqs_consumer import SQSConsumer
from runtime.worker.agent import Agent
from runtime.worker.aws import ObjectStore, RecordingAutoScaling
from runtime.worker.inputs import ImageFetcher
from runtime.worker.lifecycle import Lifecycle
from runtime.worker.metrics import Metrics
from runtime.worker.outputs import OutputUploader
from runtime.worker.progress_reporter import ProgressReporter

REGION = "us-east-1"
CDN = "https://cdn.example.test"


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


class Stack:
    """Fresh moto resources for one test: job table, outputs + models buckets, queue with DLQ redrive."""

    def __init__(self, endpoint: str, max_receive_count: int = 2, visibility: int = 30) -> None:
        self.endpoint = endpoint
        suffix = uuid.uuid4().hex[:8]
        self.sqs, self.s3, self.ddb = client(endpoint, "sqs"), client(endpoint, "s3"), client(endpoint, "dynamodb")
        self.table = f"jobs-{suffix}"
        create_table(self.ddb, self.table)
        self.store = JobStore(self.table, self.ddb)
        self.events_table = f"events-{suffix}"  # the per-job event log (issue 38)
        create_events_table(self.ddb, self.events_table)
        self.events = EventLog(self.events_table, self.ddb)
        self.bucket, self.models_bucket = f"outputs-{suffix}", f"models-{suffix}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.create_bucket(Bucket=self.models_bucket)
        self.dlq_url = self.sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"]
        self.max_receive_count = max_receive_count
        self.queue_url = self.sqs.create_queue(QueueName=f"jobs-{suffix}", Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        })["QueueUrl"]

    def config(self, **overrides: Any) -> AgentConfig:
        queue = {"kind": "sqs", "url": self.queue_url, "max_receive_count": self.max_receive_count,
                 "visibility_timeout_seconds": 30, "wait_time_seconds": 1, **overrides.pop("queue", {})}
        data = {"stack": "test", "region": REGION, "queue": queue, "job_table": self.table,
                "outputs": {"bucket": self.bucket, "cdn_base_url": CDN}, "backend": "test-pattern",
                "endpoints": {s: self.endpoint for s in ("s3", "sqs", "dynamodb", "ssm")},
                "model_cache": {"store_bucket": self.models_bucket},
                "lifecycle": {"launching_hook": "launch-hook", "terminating_hook": "drain-hook",
                              "auto_scaling_group": "workers", "imds_enabled": False},
                "worker_id": "i-test", "metrics_sink": "memory", "retry_delay_seconds": 0,
                "cancel_poll_seconds": 0.2, "allow_loopback_urls": True, "test_pattern_delay_seconds": 0.05,
                **overrides}
        return parse(data)

    def submit(self, model: str = "sd15", task: str = "txt2img", webhook: str | None = None,
               webhook_events: list[str] | None = None, **inputs: Any) -> str:
        body: dict[str, Any] = {"model": model, "task": task,
                                "inputs": inputs or {"prompt": "a cat", "width": 64, "height": 64, "seed": 1}}
        if webhook:
            body.update(webhook=webhook, webhook_events_filter=webhook_events or ["start", "completed"])
        spec = validate_job(body, allow_loopback=True)
        record = new_record(spec, owner="tests")
        self.store.create(record)
        self.sqs.send_message(QueueUrl=self.queue_url,
                              MessageBody=QueueMessage(job_id=record["job_id"], job=spec).to_json())
        return record["job_id"]

    def uploader(self) -> OutputUploader:
        """The outputs bucket behind the test CDN."""
        return OutputUploader(ObjectStore(self.s3, self.bucket))

    def webhook_dispatcher(self, secret: str) -> LocalWebhookDispatcher:
        """The local stand-in of the webhook Lambdas on this stack's table stream (started)."""
        queue_url = self.sqs.create_queue(QueueName=f"hooks-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        sender = WebhookSender(secret, allow_loopback=True, max_attempts=1, timeout_s=2.0)
        return LocalWebhookDispatcher(dynamodb=self.ddb, streams=client(self.endpoint, "dynamodbstreams"),
                                      sqs=self.sqs, table=self.table, queue_url=queue_url, sender=sender,
                                      links=OutputLinks(CDN)).start()

    def put_model(self, model_id: str, data: bytes, filename: str = "model.safetensors") -> None:
        from runtime.model_store.layout import artifact_key
        from runtime.model_store.manifest import ManifestStore, ModelEntry, ModelFile, utc_now

        key = artifact_key("checkpoint", model_id, "v1", filename)
        self.s3.put_object(Bucket=self.models_bucket, Key=key, Body=data)
        entry = ModelEntry(model_id, "checkpoint", "v1", (ModelFile(filename, key, len(data),
                                                                    hashlib.sha256(data).hexdigest()),), utc_now())
        ManifestStore(self.s3, self.models_bucket).register(entry)

    def counts(self, url: str | None = None) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url or self.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def wait_status(self, job_id: str, statuses: tuple[str, ...], timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.store.get(job_id)
            if record and record["status"] in statuses:
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never reached {statuses}: {record}")
            time.sleep(0.1)


def make_agent(stack: Stack, config: AgentConfig, backend: Backend | None = None,
               recorder: RecordingAutoScaling | None = None, cache_dir: Path | None = None,
               consumer: JobQueueConsumer | None = None, uploader: OutputUploader | None = None,
               fetcher: ImageFetcher | None = None, progress: ProgressReporter | None = None) -> Agent:
    """An agent on the stack's moto resources; ``consumer`` replaces the stack's SQS queue (Kafka, affinity),
    ``uploader`` the stack's outputs bucket (``stack.uploader()`` wrapped by a test)."""
    s3 = stack.s3
    cache = None
    if cache_dir is not None:
        cache = ModelCache(ObjectStore(s3, stack.models_bucket), manifest_resolver(s3, stack.models_bucket),
                           cache_dir, 10 * 1024 * 1024, part_size=64 * 1024)
    recorder = recorder or RecordingAutoScaling(group="workers")
    return Agent(
        config, consumer=consumer or SQSConsumer(stack.sqs, stack.queue_url, config.queue.visibility_timeout_seconds),
        store=stack.store, backend=backend or TestPatternBackend(config),
        uploader=uploader or stack.uploader(), metrics=Metrics(sink="memory"),
        lifecycle=Lifecycle(recorder, config.worker_id or "i-test", "workers", config.lifecycle.launching_hook,
                            config.lifecycle.terminating_hook),
        worker_id=config.worker_id or "i-test", model_cache=cache, fetcher=fetcher, progress=progress)


def run_in_thread(agent: Agent, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=agent.run, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


class WebhookReceiver:
    """Collects webhook POSTs on loopback."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        receiver = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((dict(self.headers), json.loads(body)))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[str]:
        return [body["event"] for _, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
