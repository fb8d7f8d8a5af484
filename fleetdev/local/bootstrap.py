"""Create the stack's stateful resources on a local AWS endpoint (moto server).

Mirrors what the Pulumi components declare (docs/CONTRACTS.md): an outputs bucket, a model store
bucket, a standard queue with a DLQ and redrive (attempts + hand-back allowance), the job table with its
key design, TTL, stream and running-lease index, and the webhook deliveries queue with its DLQ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from runtime.jobs.events import create_events_table
from runtime.jobs.store import create_table
from runtime.queues.base import SQS_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class LocalResources:
    outputs_bucket: str
    models_bucket: str
    queue_url: str
    dlq_url: str
    job_table: str
    webhook_queue_url: str
    webhook_dlq_url: str
    event_table: str | None = None  # the job event log (issue 38)


def client(service: str, endpoint: str, region: str = "us-east-1") -> Any:
    """A boto3 client on the local endpoint with dummy credentials (moto accepts any)."""
    return boto3.client(service, endpoint_url=endpoint, region_name=region, aws_access_key_id="local",
                        aws_secret_access_key="local")  # noqa: S106 - moto's dummy credentials


def create(endpoint: str, prefix: str = "genai-local", max_receive_count: int = 3,
           visibility_timeout: int = 60, region: str = "us-east-1", handback_allowance: int = 5) -> LocalResources:
    s3, sqs, ddb = (client(s, endpoint, region) for s in ("s3", "sqs", "dynamodb"))
    outputs_bucket, models_bucket = f"{prefix}-outputs", f"{prefix}-models"
    for bucket in (outputs_bucket, models_bucket):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    # moto's MaximumMessageSize default is 1 MiB; AWS's (and the stack's, components/request_queue.py) 256 KiB.
    max_size = str(SQS_MAX_MESSAGE_BYTES)
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-jobs-dlq",
                               Attributes={"MessageRetentionPeriod": "1209600", "MaximumMessageSize": max_size}
                               )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=f"{prefix}-jobs", Attributes={
        "VisibilityTimeout": str(visibility_timeout),
        "ReceiveMessageWaitTimeSeconds": "20",
        "MaximumMessageSize": max_size,  # moto's default is 1 MiB; AWS's is 256 KiB
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(max_receive_count + handback_allowance)}),
    })["QueueUrl"]
    table = f"{prefix}-jobs"
    create_table(ddb, table)
    create_events_table(ddb, f"{prefix}-job-events")  # progress events (issue 38; components/job_event_log.py)
    hook_dlq_url = sqs.create_queue(QueueName=f"{prefix}-webhooks-dlq")["QueueUrl"]
    hook_dlq_arn = sqs.get_queue_attributes(QueueUrl=hook_dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"]
    hook_queue_url = sqs.create_queue(QueueName=f"{prefix}-webhooks", Attributes={
        "VisibilityTimeout": "30",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": hook_dlq_arn, "maxReceiveCount": "8"}),
    })["QueueUrl"]
    return LocalResources(outputs_bucket=outputs_bucket, models_bucket=models_bucket, queue_url=queue_url,
                          dlq_url=dlq_url, job_table=table, webhook_queue_url=hook_queue_url,
                          webhook_dlq_url=hook_dlq_url, event_table=f"{prefix}-job-events")
