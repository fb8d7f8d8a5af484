"""The worker instances' IAM role: least privilege, scoped to this stack's own resources.

``instance_policy_document`` is a pure function of plain ARNs, so tests (and parliament) read exactly
what the component attaches; a test checks it against the operations the agent's AWS clients issue.
Only three statements carry ``Resource: "*"``, because AWS offers no resource-level permission for
their actions:

- ``cloudwatch:PutMetricData``, restricted by the ``cloudwatch:namespace`` condition key to the
  fleet's own namespace and the CloudWatch agent's;
- ``ec2:DescribeTags``, which the CloudWatch agent needs to resolve ``${aws:AutoScalingGroupName}``
  (the dimension GPU-utilisation scaling aggregates on);
- Session Manager (``SESSION_MANAGER_ACTIONS``): the minimal instance policy of AWS's "Create a custom
  IAM role for Session Manager" page: registering the instance and opening the session channels.
- ``autoscaling:DescribeAutoScalingInstances``, the agent's fallback for finding its group when
  instance metadata tags are off;
- ``ec2:DescribeSpotPriceHistory``, a spot worker's price for a job's cost (runtime.worker.prices): a
  read of public prices, without resource-level permissions.

No AWS managed policy is attached. ``AmazonSSMManagedInstanceCore`` used to give Session Manager, but it
also grants ``ssm:GetParameter``/``GetParameters``/``GetParametersByPath`` on every parameter of the
account: any worker could have read the API-key records and other environments' webhook secrets. The
only parameter a worker reads is its own CloudWatch agent config (``ReadOwnParameters``), by name;
webhooks are signed by the stack's webhook function, not by workers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from runtime import metric_names, queue_names
from runtime.worker.preview_uploader import PREVIEW_PREFIX

CLOUDWATCH_AGENT_NAMESPACE = "CWAgent"
SESSION_MANAGER_ACTIONS = ("ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel",
                           "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel",
                           "ssmmessages:OpenDataChannel")
STAR_ACTIONS = frozenset({"cloudwatch:PutMetricData", "ec2:DescribeTags", "autoscaling:DescribeAutoScalingInstances",
                          "ec2:DescribeSpotPriceHistory", *SESSION_MANAGER_ACTIONS})
"""Actions without resource-level permissions: the only ones that may use ``Resource: "*"``."""

_ASSUME_EC2 = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


@dataclass(frozen=True)
class PolicyScope:
    """Resolved identifiers of everything the workers touch (plain strings, no Outputs)."""

    partition: str
    region: str
    account_id: str
    queue_kind: str
    model_store_bucket_arn: str
    outputs_bucket_arn: str
    job_table_arn: str
    group_names: tuple[str, ...]
    log_group_names: tuple[str, ...]
    parameter_names: tuple[str, ...]
    queue_arn: str | None = None
    group_queue_arns: Sequence[str] = ()  # model groups' queues (genai-fleet:modelGroups)
    kafka_cluster_arn: str | None = None
    kafka_topic: str = queue_names.KAFKA_TOPIC
    kafka_dlq_topic: str | None = None
    kafka_group: str = queue_names.KAFKA_GROUP
    outputs_prefix: str = "outputs"
    metric_namespaces: tuple[str, ...] = field(default=(metric_names.NAMESPACE, CLOUDWATCH_AGENT_NAMESPACE))
    event_table_arn: str | None = None  # the job event log: the agent only appends to it (issue 38)

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:{self.partition}:{service}:{self.region if region else ''}:{self.account_id}:{resource}"


def kafka_sibling_arn(cluster_arn: str, kind: str, name: str) -> str:
    """``arn:...:cluster/<name>/<uuid>`` -> ``arn:...:<kind>/<name>/<uuid>/<name>`` (MSK IAM resource ARNs)."""
    head, _, tail = cluster_arn.partition(":cluster/")
    if not tail:
        raise ValueError(f"not an MSK cluster ARN: {cluster_arn!r}")
    return f"{head}:{kind}/{tail}/{name}"


def _queue_statements(s: PolicyScope) -> list[dict]:
    if s.queue_kind == "sqs":
        if not s.queue_arn:
            raise ValueError("queue kind sqs needs the queue ARN")
        return [{"Sid": "ConsumeJobQueue", "Effect": "Allow",
                 "Action": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                            "sqs:ReceiveMessage"],
                 "Resource": [s.queue_arn, *s.group_queue_arns] if s.group_queue_arns else s.queue_arn}]
    if not s.kafka_cluster_arn:
        raise ValueError("queue kind kafka needs the MSK cluster ARN")
    cluster = s.kafka_cluster_arn
    statements = [
        {"Sid": "KafkaConnect", "Effect": "Allow", "Action": ["kafka-cluster:Connect"], "Resource": cluster},
        {"Sid": "KafkaReadJobs", "Effect": "Allow", "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
         "Resource": kafka_sibling_arn(cluster, "topic", s.kafka_topic)},
        {"Sid": "KafkaConsumerGroup", "Effect": "Allow",
         "Action": ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
         "Resource": kafka_sibling_arn(cluster, "group", s.kafka_group)},
    ]
    if s.kafka_dlq_topic:
        statements.append({"Sid": "KafkaDeadLetters", "Effect": "Allow",
                           "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                           "Resource": kafka_sibling_arn(cluster, "topic", s.kafka_dlq_topic)})
    return statements


def instance_policy_document(s: PolicyScope) -> dict:
    """The inline policy of the worker role, as a policy document (dict)."""
    prefix = s.outputs_prefix.strip("/")
    statements = [
        *_queue_statements(s),
        {"Sid": "ReadModelStore", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": f"{s.model_store_bucket_arn}/*"},
        {"Sid": "ListModelStore", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": s.model_store_bucket_arn},
        {"Sid": "WriteOutputs", "Effect": "Allow",  # DeleteObject: a fenced-out attempt discards its own outputs
         "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:PutObject"],
         "Resource": f"{s.outputs_bucket_arn}/{prefix}/*"},
        {"Sid": "WritePreviews", "Effect": "Allow", "Action": ["s3:PutObject"],  # issue 38: previews, write-only
         "Resource": f"{s.outputs_bucket_arn}/{PREVIEW_PREFIX}/*"},
        {"Sid": "UpdateJobRecords", "Effect": "Allow",
         "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], "Resource": s.job_table_arn},
        *_event_log_statements(s),
        {"Sid": "PutFleetMetrics", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": list(s.metric_namespaces)}}},
        {"Sid": "ResolveGroupDimension", "Effect": "Allow", "Action": ["ec2:DescribeTags"], "Resource": "*"},
        {"Sid": "ReadSpotPrice", "Effect": "Allow", "Action": ["ec2:DescribeSpotPriceHistory"], "Resource": "*"},
        {"Sid": "SessionManager", "Effect": "Allow", "Action": list(SESSION_MANAGER_ACTIONS), "Resource": "*"},
        {"Sid": "ShipLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
         "Resource": sorted(s.arn("logs", f"log-group:{n}:*") for n in s.log_group_names)},
        {"Sid": "FindOwnGroup", "Effect": "Allow", "Action": ["autoscaling:DescribeAutoScalingInstances"],
         "Resource": "*"},
        {"Sid": "LifecycleAndProtection", "Effect": "Allow",
         "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat",
                    "autoscaling:SetInstanceHealth", "autoscaling:SetInstanceProtection"],
         "Resource": sorted(s.arn("autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{g}")
                            for g in s.group_names)},
    ]
    if s.parameter_names:
        statements.append({"Sid": "ReadOwnParameters", "Effect": "Allow", "Action": ["ssm:GetParameter"],
                           "Resource": sorted(s.arn("ssm", f"parameter/{p.lstrip('/')}") for p in s.parameter_names)})
    return {"Version": "2012-10-17", "Statement": statements}


def create_instance_role(name: str, parent: pulumi.Resource) -> tuple[aws.iam.Role, aws.iam.InstanceProfile]:
    """The role EC2 assumes (no managed policies: everything is in the inline policy), in an instance profile."""
    opts = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(f"{name}-role", assume_role_policy=_ASSUME_EC2,
                        description="genai-fleet worker instances (queue, model store, outputs, job table)", opts=opts)
    profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=opts)
    return role, profile


def attach_instance_policy(name: str, role: aws.iam.Role, document: pulumi.Input[str],
                           parent: pulumi.Resource) -> aws.iam.RolePolicy:
    return aws.iam.RolePolicy(f"{name}-access", role=role.id, policy=document,
                              opts=pulumi.ResourceOptions(parent=parent))


def _event_log_statements(s: PolicyScope) -> list[dict[str, Any]]:
    """Progress events (runtime/worker/progress_reporter.py): BatchWriteItem of new items into the event table only;
    the agent never reads, updates or deletes events (TTL removes them)."""
    if not s.event_table_arn:
        return []
    return [{"Sid": "AppendJobEvents", "Effect": "Allow", "Action": ["dynamodb:BatchWriteItem"],
             "Resource": s.event_table_arn}]


def scope_output(*, cfg_region: str, queue_kind: str, values: dict[str, pulumi.Input],
                 group_names: Sequence[pulumi.Input[str]], log_group_names: Sequence[str],
                 parameter_names: Sequence[pulumi.Input[str]], parent: pulumi.Resource,
                 **fixed) -> pulumi.Output[PolicyScope]:
    """Resolve every identifier (account, partition, ARNs from other components) into a ``PolicyScope``."""
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    identity = aws.get_caller_identity_output(opts=invoke)
    partition = aws.get_partition_output(opts=invoke)
    return pulumi.Output.all(
        account=identity.account_id, partition=partition.partition, values=values,
        groups=pulumi.Output.all(*group_names), params=pulumi.Output.all(*parameter_names),
    ).apply(lambda r: PolicyScope(
        partition=r["partition"], region=cfg_region, account_id=r["account"], queue_kind=queue_kind,
        group_names=tuple(g for g in r["groups"] if g), log_group_names=tuple(log_group_names),
        parameter_names=tuple(p for p in r["params"] if p), **r["values"], **fixed))
