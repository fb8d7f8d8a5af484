"""Job events component under mocks: DLQ consumer, sweeper, webhook stream and sender, least privilege."""

from __future__ import annotations

import json

import pytest

from components.job_events import STALE_LEASE_SECONDS, WEBHOOK_MAX_RECEIVES, JobEvents, JobEventsArgs
from components.request_queue import DLQ_CONSUMER_TIMEOUT_SECONDS, DLQ_VISIBILITY_TIMEOUT_SECONDS
from tests.unit.component_harness import build, fleet, kafka_endpoint, sqs_endpoint

FN = "aws:lambda/function:Function"
SOURCE = "aws:lambda/eventSourceMapping:EventSourceMapping"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/genai-dev-jobs"
STREAM_ARN = TABLE_ARN + "/stream/2026-01-01T00:00:00.000"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:genai-dev-jobs-dlq"
OUTPUTS_ARN = "arn:aws:s3:::genai-dev-outputs-1a2b"


def events(cfg, **kwargs):
    args = JobEventsArgs(stack=cfg.identity, storage=cfg.storage, max_attempts=cfg.queue.max_receive_count,
                         job_table_name="genai-dev-jobs", job_table_arn=TABLE_ARN,
                         job_table_stream_arn=STREAM_ARN, api_url="https://api.example.com",
                         webhook_secret_parameter_name="/genai-fleet/dev/webhook-secret",
                         outputs_bucket_name="genai-dev-outputs-1a2b", outputs_bucket_arn=OUTPUTS_ARN, **kwargs)
    return build(lambda: JobEvents("events", args), "webhook_queue_url", "webhook_dlq_url")


@pytest.fixture(scope="module")
def sqs():
    return events(fleet(), queue=sqs_endpoint(dlq_arn=DLQ_ARN))


def _policy(built, suffix):
    policy = built.one("aws:iam/rolePolicy:RolePolicy", f"events-{suffix}-policy").inputs
    return {st["Sid"]: st for st in json.loads(policy["policy"])["Statement"]}


def test_every_function_runs_the_runtime_handler(sqs):
    handlers = {r.name: r.inputs["handler"] for r in sqs.of_type(FN)}
    assert handlers == {"events-dead-letters-fn": "runtime.functions.reconciler.dead_letter_handler",
                        "events-sweeper-fn": "runtime.functions.reconciler.sweep_handler",
                        "events-webhook-stream-fn": "runtime.functions.webhook_dispatch.stream_handler",
                        "events-webhook-sender-fn": "runtime.functions.webhook_dispatch.sender_handler",
                        "events-output-sweeper-fn": "runtime.functions.output_orphans.stream_handler"}
    sweeper = sqs.one(FN, "events-sweeper-fn").inputs["environment"]["variables"]
    assert sweeper["GENAI_MAX_ATTEMPTS"] == "3" and sweeper["GENAI_STALE_LEASE_SECONDS"] == str(STALE_LEASE_SECONDS)


def test_the_dead_letters_function_fits_the_dlq_s_visibility_timeout(sqs):
    fn = sqs.one(FN, "events-dead-letters-fn").inputs
    assert fn["timeout"] == DLQ_CONSUMER_TIMEOUT_SECONDS <= DLQ_VISIBILITY_TIMEOUT_SECONDS


def test_event_sources_feed_dlq_stream_and_deliveries(sqs):
    sources = {r.name: r.inputs for r in sqs.of_type(SOURCE)}
    assert sources["events-dead-letters-source"]["eventSourceArn"] == DLQ_ARN
    assert sources["events-dead-letters-source"]["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sources["events-webhook-stream-source"]["eventSourceArn"] == STREAM_ARN
    assert sources["events-webhook-sender-source"]["batchSize"] == 1  # one receiver per invocation: isolation
    queue = sqs.one("aws:sqs/queue:Queue", "events-webhooks").inputs
    assert json.loads(queue["redrivePolicy"])["maxReceiveCount"] == WEBHOOK_MAX_RECEIVES
    assert queue["sqsManagedSseEnabled"] is True


def test_functions_get_only_what_they_call(sqs):
    dead = _policy(sqs, "dead-letters")
    assert sorted(dead["JobTable"]["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    assert dead["JobsDlq"]["Resource"] == DLQ_ARN
    assert _policy(sqs, "sweeper")["RunningIndex"]["Resource"] == TABLE_ARN + "/index/*"
    sender = _policy(sqs, "webhook-sender")
    assert sender["WebhookSecret"]["Resource"].endswith(":parameter/genai-fleet/dev/webhook-secret")
    assert "JobTable" not in sender  # the sender never touches job records
    assert _policy(sqs, "webhook-stream")["ReadStream"]["Resource"] == STREAM_ARN


def test_kafka_stacks_have_no_dlq_consumer():
    built = events(fleet(queueKind="kafka"), queue=kafka_endpoint())
    assert "events-dead-letters-fn" not in {r.name for r in built.of_type(FN)}
    assert {r.name for r in built.of_type(FN)} >= {"events-sweeper-fn", "events-webhook-sender-fn"}


def test_output_sweeper_reads_final_transitions_and_touches_only_the_outputs_prefix(sqs):
    """Issue 28: a killed attempt's outputs are deleted when its job turns final; list and delete rights
    are scoped to ``outputs/`` of the outputs bucket."""
    source = sqs.one(SOURCE, "events-output-sweeper-source").inputs
    assert source["eventSourceArn"] == STREAM_ARN
    pattern = json.loads(source["filterCriteria"]["filters"][0]["pattern"])
    assert pattern == {"eventName": ["MODIFY"],
                       "dynamodb": {"NewImage": {"status": {"S": ["succeeded", "failed", "canceled"]}}}}
    # issue 44: and the records the table's TTL removes (a job's retention ran out), not a caller's deletes
    assert json.loads(source["filterCriteria"]["filters"][1]["pattern"]) == {
        "eventName": ["REMOVE"], "userIdentity": {"type": ["Service"], "principalId": ["dynamodb.amazonaws.com"]}}
    assert len(source["filterCriteria"]["filters"]) == 2
    policy = _policy(sqs, "output-sweeper")
    assert policy["ListOutputs"] == {"Sid": "ListOutputs", "Effect": "Allow", "Action": ["s3:ListBucket"],
                                     "Resource": OUTPUTS_ARN,
                                     "Condition": {"StringLike": {"s3:prefix": ["outputs/*"]}}}
    assert policy["DeleteOutputs"]["Action"] == ["s3:DeleteObject"]
    assert policy["DeleteOutputs"]["Resource"] == OUTPUTS_ARN + "/outputs/*"
    assert policy["ListStreams"]["Resource"] == "*"  # no resource-level permissions (issue 32)
    assert set(policy) == {"ReadStream", "ListStreams", "ListOutputs", "DeleteOutputs", "Logs"}
    env = sqs.one(FN, "events-output-sweeper-fn").inputs["environment"]["variables"]
    assert env == {"GENAI_OUTPUTS_BUCKET": "genai-dev-outputs-1a2b", "GENAI_OUTPUTS_PREFIX": "outputs"}



EVENTS_STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/genai-dev-job-events/stream/2026-01-01T00:00:00.000"


def test_progress_webhooks_read_marked_events_only_with_least_privilege():
    """Issue 38: the opt-in progress webhook: the event log's stream, filtered to the items the worker marked,
    may read that stream, get a job, and queue deliveries; nothing else. Without the stream: no function."""
    built = events(fleet(), queue=sqs_endpoint(dlq_arn=DLQ_ARN), event_table_stream_arn=EVENTS_STREAM_ARN)
    fn = built.one(FN, "events-webhook-progress-fn").inputs
    assert fn["handler"] == "runtime.functions.webhook_dispatch.progress_stream_handler"
    assert fn["environment"]["variables"]["GENAI_JOB_TABLE"] == "genai-dev-jobs"
    source = built.one(SOURCE, "events-webhook-progress-source").inputs
    assert source["eventSourceArn"] == EVENTS_STREAM_ARN
    pattern = json.loads(source["filterCriteria"]["filters"][0]["pattern"])
    assert pattern == {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"notify": {"S": ["progress"]}}}}
    policy = _policy(built, "webhook-progress")
    assert set(policy) == {"ReadStream", "ListStreams", "ReadJob", "QueueDeliveries", "Logs"}
    assert policy["ReadStream"]["Resource"] == EVENTS_STREAM_ARN
    assert policy["ReadJob"]["Action"] == ["dynamodb:GetItem"] and policy["ReadJob"]["Resource"] == TABLE_ARN
    assert policy["QueueDeliveries"]["Action"] == ["sqs:SendMessage"]
    assert "events-webhook-progress-fn" not in {r.name for r in events(
        fleet(), queue=sqs_endpoint(dlq_arn=DLQ_ARN)).of_type(FN)}
