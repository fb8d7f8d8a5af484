"""Request queue between the job API and the workers; the kind comes from ``genai-fleet:queueKind``.

``sqs`` (default): a standard queue with SQS-managed encryption, long polling and a short visibility
timeout (the lease, 30 s, renewed by the agent's heartbeat while work runs, so a dead worker's job is
retried within a minute); a receive past ``maxReceiveCount`` plus a hand-back allowance moves the message
to the dead-letter queue, whose consumer (components/job_events.py) makes the job final; the DLQ's
visibility timeout is six times that consumer's function timeout, as Lambda's SQS event source requires.

``kafka``: an MSK Serverless cluster in the private subnets, IAM (SASL/OAUTHBEARER) client auth only,
port 9098 open only to the ``kafka-clients`` security group this component creates (workers and the API
attach it to their instances / function) plus any extra client groups passed in. That group allows out
9098 to the brokers and 443 anywhere: the API handler and the Kafka functions run in the VPC with this
group alone and call DynamoDB, SSM and CloudWatch (through the NAT gateway or the gateway endpoints).
MSK Serverless has no public access. A child ``KafkaFunctions`` component creates the jobs topic and its
DLQ at deploy time (partitions, retention) and publishes the consumer lag each minute as ``backlog_metric``.

Both kinds export one typed ``endpoint`` (components/queue_endpoint.py): ``SqsEndpoint`` or
``KafkaEndpoint``, with the backlog metric (what the cluster's scaling policy divides by in-service
instances) and the identifiers IAM policies need. Topic and group names come from runtime/queue_names.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.config import QueueSettings, StackIdentity, StorageSettings
from components.kafka_functions import KafkaFunctions, KafkaFunctionsArgs, sibling_arn
from components.queue_endpoint import KafkaEndpoint, QueueEndpoint, SqsEndpoint, SqsGroupQueue
from runtime import metric_names, queue_names
from runtime.queues.base import SQS_MAX_MESSAGE_BYTES

DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # SQS maximum: the dead-letters function retries a message it fails on this long
# The DLQ's consumer (components/job_events.py "dead-letters") reads it through an SQS event source mapping.
# Lambda refuses to create that mapping when the function timeout exceeds the queue's visibility timeout
# (AWS's default is 30 s); AWS recommends six times the function timeout, which also covers throttled retries.
DLQ_CONSUMER_TIMEOUT_SECONDS = 60
DLQ_VISIBILITY_TIMEOUT_SECONDS = 6 * DLQ_CONSUMER_TIMEOUT_SECONDS
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600  # SQS default; a job waiting this long is stale anyway
LONG_POLL_SECONDS = 20  # SQS maximum
KAFKA_PORT_IAM = 9098
HTTPS_PORT = 443  # AWS service endpoints
# Topic settings: created at deploy time by KafkaFunctions (MSK Serverless does not auto-create topics).
KAFKA_TOPIC = queue_names.KAFKA_TOPIC
KAFKA_DLQ_TOPIC = queue_names.KAFKA_DLQ_TOPIC
KAFKA_GROUP = queue_names.KAFKA_GROUP
KAFKA_RETENTION_MS = 7 * 24 * 3600 * 1000
KAFKA_MIN_PARTITIONS = 6
KAFKA_DLQ_PARTITIONS = 1
KAFKA_DLQ_RETENTION_MS = DLQ_RETENTION_SECONDS * 1000  # as long as the SQS DLQ keeps poison jobs


@dataclass
class RequestQueueArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: queue and cluster names, the Kafka backlog metric's Stack dimension."""

    queue: QueueSettings
    """``FleetConfig.queue``: kind, lease (visibility timeout), redrive count, model group queues."""

    storage: StorageSettings
    """``FleetConfig.storage``: ``log_retention_days`` of the Kafka functions (kafka only)."""

    max_workers: int
    """``FleetConfig.cluster.max_size``: Kafka gets at least one partition per possible worker."""

    vpc_id: pulumi.Input[str] | None = None
    """VPC of the Kafka cluster's security groups (kafka only)."""

    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    """Private subnets the MSK Serverless cluster places its endpoints in (kafka only; 2 or more AZs)."""

    client_security_group_ids: Sequence[pulumi.Input[str]] = field(default_factory=list)
    """Extra security groups allowed to reach the brokers on 9098, beside the ``kafka-clients`` group."""

    kafka_layer_dir: str | None = None
    """Pre-built Lambda layer (``python/...``) with the Kafka client wheels (kafka only; default: built once)."""


def _sqs_backlog(names: Sequence[str]) -> dict:
    """Visible messages of the main queue, plus (model groups) each group queue's: summed where used."""
    backlog = {"namespace": "AWS/SQS", "metric_name": "ApproximateNumberOfMessagesVisible",
               "dimensions": {"QueueName": names[0]}}
    if len(names) > 1:
        backlog["extra_dimensions"] = [{"QueueName": name} for name in names[1:]]
    return backlog


def kafka_partitions(max_workers: int) -> int:
    """One partition per possible worker at least, so every instance can own a partition at full size."""
    return max(KAFKA_MIN_PARTITIONS, max_workers)


def kafka_topic_specs(max_workers: int) -> list[dict]:
    """What the deploy-time topic creator makes: the jobs topic and its DLQ (config values are strings)."""
    return [{"name": KAFKA_TOPIC, "partitions": kafka_partitions(max_workers),
             "config": {"retention.ms": str(KAFKA_RETENTION_MS)}},
            {"name": KAFKA_DLQ_TOPIC, "partitions": KAFKA_DLQ_PARTITIONS,
             "config": {"retention.ms": str(KAFKA_DLQ_RETENTION_MS)}}]


class RequestQueue(pulumi.ComponentResource):
    """SQS queue + DLQ, or MSK Serverless with IAM auth; exports a typed ``endpoint`` for the other components."""

    kind: str
    endpoint: QueueEndpoint
    backlog_metric: pulumi.Output[dict]

    def __init__(self, name: str, args: RequestQueueArgs, opts: pulumi.ResourceOptions | None = None):
        if args.queue.kind == "kafka" and (args.vpc_id is None or args.subnet_ids is None):
            raise ValueError("queueKind kafka needs RequestQueueArgs.vpc_id and subnet_ids (private subnets)")
        super().__init__("genai:queue:RequestQueue", name, None, opts)
        self._name = name
        self.kind = args.queue.kind
        self.endpoint = self._create_sqs(args) if self.kind == "sqs" else self._create_kafka(args)
        self.backlog_metric = pulumi.Output.from_input(self.endpoint.backlog_metric)
        self.register_outputs({"kind": self.kind, "backlog_metric": self.backlog_metric,
                               **{f"endpoint_{k}": v for k, v in vars(self.endpoint).items() if k != "groups"},
                               "endpoint_groups": [{**vars(g), "models": list(g.models)}
                                                   for g in getattr(self.endpoint, "groups", ())]})

    def _opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # --- sqs ---------------------------------------------------------------------------------------
    def _create_sqs(self, args: RequestQueueArgs) -> SqsEndpoint:
        prefix, settings = args.stack.resource_prefix(), args.queue
        # The API sizes jobs against this limit (SQS_MAX_MESSAGE_BYTES); declared so it never depends on a default.
        dlq = aws.sqs.Queue(f"{self._name}-dlq", name=queue_names.sqs_dlq_name(prefix), sqs_managed_sse_enabled=True,
                            message_retention_seconds=DLQ_RETENTION_SECONDS, max_message_size=SQS_MAX_MESSAGE_BYTES,
                            visibility_timeout_seconds=DLQ_VISIBILITY_TIMEOUT_SECONDS,
                            receive_wait_time_seconds=LONG_POLL_SECONDS, opts=self._opts())
        redrive = dlq.arn.apply(lambda arn: json.dumps(
            {"deadLetterTargetArn": arn, "maxReceiveCount": settings.redrive_receive_count}))
        queue = aws.sqs.Queue(f"{self._name}-queue", name=queue_names.sqs_queue_name(prefix),
                              sqs_managed_sse_enabled=True,
                              visibility_timeout_seconds=settings.visibility_timeout_seconds,
                              receive_wait_time_seconds=LONG_POLL_SECONDS,
                              message_retention_seconds=QUEUE_RETENTION_SECONDS, redrive_policy=redrive,
                              max_message_size=SQS_MAX_MESSAGE_BYTES,
                              opts=self._opts())
        groups = tuple(self._create_group_queue(args, group, models, redrive)
                       for group, models in settings.model_groups)
        # Only the jobs queues may send to the DLQ (redrive), so nothing else lands there by mistake.
        aws.sqs.RedriveAllowPolicy(f"{self._name}-dlq-allow", queue_url=dlq.url,
                                   redrive_allow_policy=pulumi.Output.all(queue.arn, *(g.queue_arn for g in groups))
                                   .apply(lambda arns: json.dumps(
                                       {"redrivePermission": "byQueue", "sourceQueueArns": list(arns)})),
                                   opts=self._opts())
        backlog = pulumi.Output.all(queue.name, *(g.queue_name for g in groups)).apply(_sqs_backlog)
        return SqsEndpoint(queue_url=queue.url, queue_arn=queue.arn, queue_name=queue.name, dlq_url=dlq.url,
                           dlq_arn=dlq.arn, dlq_name=dlq.name, backlog_metric=backlog, groups=groups)

    def _create_group_queue(self, args: RequestQueueArgs, group: str, models: tuple[str, ...],
                            redrive: pulumi.Output[str]) -> SqsGroupQueue:
        """A model group's queue (model affinity): the main queue's settings and DLQ."""
        queue = aws.sqs.Queue(f"{self._name}-queue-{group}",
                              name=queue_names.sqs_group_queue_name(args.stack.resource_prefix(), group),
                              sqs_managed_sse_enabled=True,
                              visibility_timeout_seconds=args.queue.visibility_timeout_seconds,
                              receive_wait_time_seconds=LONG_POLL_SECONDS,
                              message_retention_seconds=QUEUE_RETENTION_SECONDS, redrive_policy=redrive,
                              max_message_size=SQS_MAX_MESSAGE_BYTES, opts=self._opts())
        return SqsGroupQueue(group=group, models=models, queue_url=queue.url, queue_arn=queue.arn,
                             queue_name=queue.name)

    # --- kafka -------------------------------------------------------------------------------------
    def _create_kafka(self, args: RequestQueueArgs) -> KafkaEndpoint:
        cluster_sg, client_sg = self._create_kafka_security_groups(args)
        cluster = aws.msk.ServerlessCluster(
            f"{self._name}-kafka", cluster_name=f"{args.stack.resource_prefix()}-jobs",
            client_authentication={"sasl": {"iam": {"enabled": True}}},
            vpc_configs=[{"subnet_ids": args.subnet_ids, "security_group_ids": [cluster_sg.id]}],
            tags={"Name": f"{self._name}-kafka"}, opts=self._opts())
        self.kafka_functions = KafkaFunctions(f"{self._name}-kafka-fns", KafkaFunctionsArgs(
            stack=args.stack, storage=args.storage, cluster_arn=cluster.arn,
            bootstrap_brokers=cluster.bootstrap_brokers_sasl_iam, subnet_ids=args.subnet_ids,
            client_security_group_id=client_sg.id, topics=kafka_topic_specs(args.max_workers),
            topic=KAFKA_TOPIC, group=KAFKA_GROUP, layer_dir=args.kafka_layer_dir), opts=self._opts())
        return KafkaEndpoint(
            cluster_arn=cluster.arn, bootstrap_brokers=cluster.bootstrap_brokers_sasl_iam,
            # arn:aws:kafka:<region>:<acct>:cluster/<name>/<uuid> -> .../topic/<name>/<uuid>/<topic>
            topic_arn=cluster.arn.apply(lambda arn: sibling_arn(arn, "topic", KAFKA_TOPIC)),
            dlq_topic_arn=cluster.arn.apply(lambda arn: sibling_arn(arn, "topic", KAFKA_DLQ_TOPIC)),
            group_arn=cluster.arn.apply(lambda arn: sibling_arn(arn, "group", KAFKA_GROUP)),
            client_security_group_id=client_sg.id, subnet_ids=args.subnet_ids,
            backlog_metric={"namespace": metric_names.NAMESPACE, "metric_name": metric_names.KAFKA_BACKLOG,
                            "dimensions": {metric_names.DIM_STACK: args.stack.stack}},
            topic=KAFKA_TOPIC, dlq_topic=KAFKA_DLQ_TOPIC, group=KAFKA_GROUP)

    def _create_kafka_security_groups(
            self, args: RequestQueueArgs) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        """Brokers accept 9098 from the client group (and given groups) only; no CIDR sources at all."""
        cluster_sg = aws.ec2.SecurityGroup(f"{self._name}-kafka", vpc_id=args.vpc_id,
                                           description="MSK Serverless brokers: IAM-auth Kafka from clients only",
                                           tags={"Name": f"{self._name}-kafka"}, opts=self._opts())
        client_sg = aws.ec2.SecurityGroup(f"{self._name}-kafka-clients", vpc_id=args.vpc_id,
                                          description="Attach to workers and the API to reach the Kafka brokers",
                                          tags={"Name": f"{self._name}-kafka-clients"}, opts=self._opts())
        sources = [client_sg.id, *args.client_security_group_ids]
        for i, source in enumerate(sources):
            aws.vpc.SecurityGroupIngressRule(f"{self._name}-kafka-from-{i}", security_group_id=cluster_sg.id,
                                             referenced_security_group_id=source, ip_protocol="tcp",
                                             from_port=KAFKA_PORT_IAM, to_port=KAFKA_PORT_IAM,
                                             description="Kafka over IAM auth", opts=self._opts())
        aws.vpc.SecurityGroupEgressRule(f"{self._name}-kafka-clients-out", security_group_id=client_sg.id,
                                        referenced_security_group_id=cluster_sg.id, ip_protocol="tcp",
                                        from_port=KAFKA_PORT_IAM, to_port=KAFKA_PORT_IAM,
                                        description="to the Kafka brokers", opts=self._opts())
        # The provider removes AWS's default allow-all egress, and the API handler and the Kafka functions
        # have this group only: without HTTPS out they could not reach DynamoDB, SSM or CloudWatch.
        aws.vpc.SecurityGroupEgressRule(f"{self._name}-kafka-clients-https", security_group_id=client_sg.id,
                                        cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=HTTPS_PORT,
                                        to_port=HTTPS_PORT,
                                        description="AWS APIs over HTTPS (NAT gateway, S3/DynamoDB endpoints)",
                                        opts=self._opts())
        return cluster_sg, client_sg
