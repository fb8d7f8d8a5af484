"""Create the stack's stateful resources on a local AWS endpoint (moto server).

Mirrors what the Pulumi components declare (docs/CONTRACTS.md): an outputs bucket, a model store
bucket, a standard queue with a DLQ and redrive, and the job table with its key design and TTL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from runtime.queues.base import SQS_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class LocalResources:
    outputs_bucket: str
    models_bucket: str
    queue_url: str
    dlq_url: str
    job_table: str


def client(service: str, endpoint: str, region: str = "us-east-1") -> Any:
    """A boto3 client on the local endpoint with dummy credentials (moto accepts any)."""
    return boto3.client(service, endpoint_url=endpoint, region_name=region, aws_access_key_id="local",
                        aws_secret_access_key="local")  # noqa: S106 - moto's dummy credentials


def create(endpoint: str, prefix: str = "genai-local", max_receive_count: int = 3,
           visibility_timeout: int = 60, region: str = "us-east-1") -> LocalResources:
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
        "MaximumMessageSize": max_size,
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
    })["QueueUrl"]
    table = f"{prefix}-jobs"
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True,
                                                                      "AttributeName": "expires_at"})
    return LocalResources(outputs_bucket=outputs_bucket, models_bucket=models_bucket, queue_url=queue_url,
                          dlq_url=dlq_url, job_table=table)
