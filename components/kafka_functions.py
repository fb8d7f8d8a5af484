"""The Kafka queue's two functions, in the cluster's private subnets with the Kafka client security group.

- Topic creator (``runtime.functions.kafka_topics``): invoked by the deployment itself (``aws.lambda_.Invocation``)
  whenever the topic settings change, so the jobs topic and its DLQ exist, with their partitions and
  retention, before the API or any worker uses them. A function rather than Pulumi's ``kafka`` provider:
  MSK Serverless endpoints are private to the VPC, and the machine running ``pulumi up`` is not in it.
- Lag publisher (``runtime.functions.kafka_lag``): an EventBridge rule runs it every minute; it publishes the
  workers' consumer-group lag as the backlog metric the scaling policies and alarms read.

IAM follows the MSK "IAM access control" action table: every client needs ``kafka-cluster:Connect`` on
the cluster; the creator gets ``CreateTopic`` / ``DescribeTopic`` / ``AlterTopic`` and the topic dynamic
configuration actions on the two topics only; the publisher gets ``DescribeTopic`` on the jobs topic and
``DescribeGroup`` on the workers' group (metadata, ListOffsets, OffsetFetch) and ``PutMetricData`` limited
to the fleet's namespace. Both functions run on arm64 python3.12 with a layer holding confluent-kafka and
aws-msk-iam-sasl-signer-python (built once into ``.build/``, as the API's layer).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config import StackIdentity, StorageSettings
from runtime import metric_names

ROOT = Path(__file__).resolve().parent.parent
CODE_FILES = ("runtime/__init__.py", "runtime/metric_names.py", "runtime/queue_names.py", "runtime/aws_clients.py",
              "runtime/queues/__init__.py", "runtime/queues/base.py", "runtime/queues/kafka_auth.py",
              "runtime/queues/kafka_lag.py", "runtime/functions/__init__.py", "runtime/functions/environment.py",
              "runtime/functions/kafka_lag.py", "runtime/functions/kafka_topics.py")
LAG_SCHEDULE = "rate(1 minute)"  # CloudWatch's finest standard resolution; the alarms read 60 s periods
VPC_ACCESS_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
TOPIC_ADMIN_ACTIONS = ("kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopic", "kafka-cluster:AlterTopic",
                       "kafka-cluster:DescribeTopicDynamicConfiguration",
                       "kafka-cluster:AlterTopicDynamicConfiguration")


@dataclass
class KafkaFunctionsArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: function names and the lag metric's Stack dimension."""

    storage: StorageSettings
    """``FleetConfig.storage``: ``log_retention_days`` of the functions' log groups."""

    cluster_arn: pulumi.Input[str]
    """The MSK Serverless cluster."""

    bootstrap_brokers: pulumi.Input[str]
    """Its SASL/IAM bootstrap brokers."""

    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Private subnets the functions run in, beside the brokers. Nothing here gives them a way to CloudWatch:
    the lag publisher's PutMetricData needs a route out of these subnets (a NAT gateway or a ``monitoring``
    interface endpoint) and egress on 443 from ``client_security_group_id`` (RequestQueue's security groups
    decide what that group may reach)."""

    client_security_group_id: pulumi.Input[str]
    """The group the brokers accept clients from."""

    topics: Sequence[Mapping[str, Any]]
    """Topic specs for the creator: ``{"name", "partitions", "config": {"retention.ms": "..."}}``."""

    topic: str
    """The jobs topic the lag is measured on."""

    group: str
    """The workers' consumer group."""

    layer_dir: str | None = None
    """Pre-built layer directory (``python/...``); default ``GENAI_KAFKA_LAYER_DIR`` or the API's cached layer."""


def sibling_arn(cluster_arn: str, kind: str, name: str) -> str:
    """arn:aws:kafka:<region>:<acct>:cluster/<name>/<uuid> -> ...:<kind>/<name>/<uuid>/<name>."""
    head, _, rest = cluster_arn.partition(":cluster/")
    return f"{head}:{kind}/{rest}/{name}"


class KafkaFunctions(pulumi.ComponentResource):
    """Topic creator (run at deploy) and per-minute lag publisher for the MSK Serverless queue."""

    topics_result: pulumi.Output[str]
    lag_function_name: pulumi.Output[str]
    topic_function_name: pulumi.Output[str]

    def __init__(self, name: str, args: KafkaFunctionsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:queue:KafkaFunctions", name, None, opts)
        self._name, self._args, self._stack = name, args, args.stack
        if not args.topics:
            raise ValueError("KafkaFunctionsArgs.topics: list the jobs topic and its DLQ")
        code = _code_archive()
        layer = aws.lambda_.LayerVersion(
            f"{name}-layer", layer_name=f"{self._stack.resource_prefix()}-kafka-clients",
            code=pulumi.FileArchive(_layer_dir(args.layer_dir)), compatible_runtimes=["python3.12"],
            compatible_architectures=["arm64"], opts=self._opts())
        env = {"GENAI_KAFKA_BOOTSTRAP": args.bootstrap_brokers, "GENAI_KAFKA_IAM": "true"}
        creator = self._function("topics", "runtime.functions.kafka_topics.lambda_handler", code, layer, 120, env,
                                 self._creator_statements())
        invocation = aws.lambda_.Invocation(
            f"{name}-create-topics", function_name=creator.name, input=json.dumps({"topics": list(args.topics)}),
            triggers={"topics": hashlib.sha256(json.dumps(list(args.topics), sort_keys=True).encode()).hexdigest()},
            opts=self._opts())
        publisher = self._function(
            "lag", "runtime.functions.kafka_lag.lambda_handler", code, layer, 30,
            {**env, "GENAI_KAFKA_TOPIC": args.topic, "GENAI_KAFKA_GROUP": args.group, "GENAI_STACK": self._stack.stack},
            self._publisher_statements())
        self._schedule(publisher, invocation)
        self.topics_result = invocation.result
        self.lag_function_name = publisher.name
        self.topic_function_name = creator.name
        self.register_outputs({"topics_result": self.topics_result, "lag_function_name": self.lag_function_name,
                               "topic_function_name": self.topic_function_name})

    def _opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # --- IAM -------------------------------------------------------------------------------------
    def _on_cluster(self, render: Any) -> pulumi.Output[Any]:
        return pulumi.Output.from_input(self._args.cluster_arn).apply(render)

    def _creator_statements(self) -> pulumi.Output[list[dict]]:
        names = [t["name"] for t in self._args.topics]
        return self._on_cluster(lambda arn: [
            {"Sid": "KafkaConnect", "Effect": "Allow", "Action": ["kafka-cluster:Connect"], "Resource": arn},
            {"Sid": "KafkaTopics", "Effect": "Allow", "Action": sorted(TOPIC_ADMIN_ACTIONS),
             "Resource": [sibling_arn(arn, "topic", n) for n in names]}])

    def _publisher_statements(self) -> pulumi.Output[list[dict]]:
        a = self._args
        return self._on_cluster(lambda arn: [
            {"Sid": "KafkaConnect", "Effect": "Allow", "Action": ["kafka-cluster:Connect"], "Resource": arn},
            {"Sid": "KafkaJobsTopic", "Effect": "Allow", "Action": ["kafka-cluster:DescribeTopic"],
             "Resource": sibling_arn(arn, "topic", a.topic)},
            {"Sid": "KafkaWorkersGroup", "Effect": "Allow", "Action": ["kafka-cluster:DescribeGroup"],
             "Resource": sibling_arn(arn, "group", a.group)},
            {"Sid": "BacklogMetric", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*",
             "Condition": {"StringEquals": {"cloudwatch:namespace": metric_names.NAMESPACE}}}])

    # --- functions -------------------------------------------------------------------------------
    def _function(self, suffix: str, handler: str, code: pulumi.Archive, layer: aws.lambda_.LayerVersion,
                  timeout: int, environment: dict[str, pulumi.Input[str]],
                  statements: pulumi.Output[list[dict]]) -> aws.lambda_.Function:
        name, stack = f"{self._name}-{suffix}", self._stack
        fn_name = f"{stack.resource_prefix()}-kafka-{suffix}"
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/lambda/{fn_name}",
                                       retention_in_days=self._args.storage.log_retention_days, opts=self._opts())
        policy = pulumi.Output.all(statements, logs.arn).apply(lambda v: json.dumps({
            "Version": "2012-10-17", "Statement": [*v[0], {
                "Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{v[1]}:*"}]}))
        role = aws.iam.Role(f"{name}-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}),
            opts=self._opts())
        inline = aws.iam.RolePolicy(f"{name}-policy", role=role.id, name="least-privilege", policy=policy,
                                    opts=self._opts())
        vpc = aws.iam.RolePolicyAttachment(f"{name}-vpc", role=role.name, policy_arn=VPC_ACCESS_POLICY,
                                           opts=self._opts())
        return aws.lambda_.Function(
            f"{name}-fn", name=fn_name, role=role.arn, runtime="python3.12", architectures=["arm64"],
            handler=handler, code=code, memory_size=256, timeout=timeout, layers=[layer.arn],
            environment={"variables": environment},
            vpc_config={"subnet_ids": self._args.subnet_ids,
                        "security_group_ids": [self._args.client_security_group_id]},
            logging_config={"log_format": "JSON", "log_group": logs.name, "application_log_level": "INFO",
                            "system_log_level": "WARN"},
            opts=self._opts(depends_on=[logs, inline, vpc]))

    def _schedule(self, publisher: aws.lambda_.Function, after: pulumi.Resource) -> None:
        rule = aws.cloudwatch.EventRule(f"{self._name}-lag-schedule", name=f"{self._stack.resource_prefix()}-kafka-lag",
                                        schedule_expression=LAG_SCHEDULE,
                                        description="Publish the Kafka consumer lag as the fleet's backlog metric",
                                        opts=self._opts(depends_on=[after]))
        aws.lambda_.Permission(f"{self._name}-lag-invoke", action="lambda:InvokeFunction", function=publisher.name,
                               principal="events.amazonaws.com", source_arn=rule.arn, opts=self._opts())
        aws.cloudwatch.EventTarget(f"{self._name}-lag-target", rule=rule.name, arn=publisher.arn,
                                   opts=self._opts())


def _layer_dir(given: str | None) -> str:
    chosen = given or os.environ.get("GENAI_KAFKA_LAYER_DIR")
    if chosen:
        return chosen
    from components import lambda_package  # one offline build of the same wheels for every Kafka Lambda

    return str(lambda_package.KAFKA_LAYER.require())


def _code_archive() -> pulumi.AssetArchive:
    """Only the modules the two handlers import (boto3 comes with the Lambda runtime)."""
    return pulumi.AssetArchive({rel: pulumi.FileAsset(str(ROOT / rel)) for rel in CODE_FILES})
