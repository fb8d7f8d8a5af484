"""What the other components need to know about the request queue: one typed value per queue kind.

``RequestQueue`` builds either an ``SqsEndpoint`` or a ``KafkaEndpoint``; ``Api``, ``InferenceCluster``,
``JobEvents`` and ``Monitoring`` take the union and match on the variant, so no caller carries a bag of
optional SQS and Kafka fields, and ``__main__.py`` never branches on the queue kind. Both variants carry
``backlog_metric`` (what the cluster's target tracking divides by in-service instances) and ``exports``
(the stack outputs users need for that kind).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi

from runtime import queue_names


@dataclass(frozen=True)
class SqsGroupQueue:
    """The queue of one model group (model affinity, docs/fleet.md): same settings and DLQ as the main queue."""

    group: str
    """Group name (genai-fleet:modelGroups)."""
    models: tuple[str, ...]
    """Model ids whose jobs the API sends here."""
    queue_url: pulumi.Input[str]
    """URL the API sends the group's jobs to and the workers receive from."""
    queue_arn: pulumi.Input[str]
    """ARN, for least-privilege policies."""
    queue_name: pulumi.Input[str]
    """Name, for metrics and alarms."""


@dataclass(frozen=True)
class SqsEndpoint:
    """A standard SQS queue with its dead-letter queue."""

    kind: ClassVar[str] = "sqs"

    queue_url: pulumi.Input[str]
    """URL the API sends to and the workers receive from."""
    queue_arn: pulumi.Input[str]
    """ARN, for least-privilege policies."""
    queue_name: pulumi.Input[str]
    """Name, for the oldest-message alarm."""
    dlq_url: pulumi.Input[str]
    """Dead-letter queue URL (a stack output, for redrive)."""
    dlq_arn: pulumi.Input[str]
    """Dead-letter queue ARN: the dead-letter consumer's event source."""
    dlq_name: pulumi.Input[str]
    """Dead-letter queue name, for the DLQ-not-empty alarm."""
    backlog_metric: pulumi.Input[Mapping[str, Any]]
    """``{"namespace", "metric_name", "dimensions"}`` of the queue depth; with model groups also
    ``"extra_dimensions"``: one dimension set per group queue, summed with the main queue's."""
    groups: tuple[SqsGroupQueue, ...] = ()
    """Model groups' queues (empty without genai-fleet:modelGroups)."""

    def queue_arns(self) -> list[pulumi.Input[str]]:
        """The main queue and every group queue: what the API sends to and the workers receive from."""
        return [self.queue_arn, *(g.queue_arn for g in self.groups)]

    def exports(self) -> dict[str, pulumi.Input[str]]:
        return {"queueUrl": self.queue_url, "deadLetterQueueUrl": self.dlq_url}


@dataclass(frozen=True)
class KafkaEndpoint:
    """An MSK Serverless cluster with IAM auth, reachable from the private subnets only."""

    kind: ClassVar[str] = "kafka"

    cluster_arn: pulumi.Input[str]
    """Cluster ARN; topic and group ARNs are derived from it."""
    bootstrap_brokers: pulumi.Input[str]
    """SASL/IAM bootstrap brokers (port 9098)."""
    topic_arn: pulumi.Input[str]
    """ARN of the jobs topic (the API writes to it)."""
    dlq_topic_arn: pulumi.Input[str]
    """ARN of the dead-letter topic."""
    group_arn: pulumi.Input[str]
    """ARN of the workers' consumer group."""
    client_security_group_id: pulumi.Input[str]
    """Security group the brokers accept clients from; attach it to every client."""
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Private subnets (with NAT) the brokers' endpoints are in; Lambda clients run there."""
    backlog_metric: pulumi.Input[Mapping[str, Any]]
    """The consumer lag metric published by the lag function."""
    topic: str = queue_names.KAFKA_TOPIC
    """Jobs topic."""
    dlq_topic: str = queue_names.KAFKA_DLQ_TOPIC
    """Topic the workers write poison jobs to."""
    group: str = queue_names.KAFKA_GROUP
    """Consumer group of the workers."""

    def exports(self) -> dict[str, pulumi.Input[str]]:
        return {"kafkaBootstrapBrokers": self.bootstrap_brokers}


QueueEndpoint = SqsEndpoint | KafkaEndpoint
