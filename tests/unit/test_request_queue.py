"""Request queue: SQS (DLQ, SSE, visibility, long polling) and Kafka on MSK Serverless (IAM auth, private)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from components.config import HANDBACK_ALLOWANCE, LEASE_SECONDS
from components.queue_endpoint import KafkaEndpoint, SqsEndpoint
from components.request_queue import (
    DLQ_CONSUMER_TIMEOUT_SECONDS,
    DLQ_VISIBILITY_TIMEOUT_SECONDS,
    RequestQueue,
    RequestQueueArgs,
    kafka_partitions,
)
from runtime import metric_names
from tests.unit.component_harness import build, children, each, fleet, stack_fleet

TOKEN = "genai:queue:RequestQueue"
QUEUE = "aws:sqs/queue:Queue"
MSK = "aws:msk/serverlessCluster:ServerlessCluster"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]


def queue(cfg, **kwargs):
    """Built queue; ``outputs`` holds ``backlog_metric`` and every field of the exported endpoint."""
    variant = SqsEndpoint if cfg.queue.kind == "sqs" else KafkaEndpoint
    names = [f"endpoint.{f.name}" for f in dataclasses.fields(variant)]
    args = RequestQueueArgs(stack=cfg.identity, queue=cfg.queue, storage=cfg.storage,
                            max_workers=cfg.cluster.max_size, **kwargs)
    built = build(lambda: RequestQueue("queue", args), "backlog_metric", *names)
    assert isinstance(built.component.endpoint, variant)
    built.outputs.update({name.split(".", 1)[1]: built.outputs[name] for name in names})
    return built


@pytest.fixture(scope="module")
def dev():
    return queue(stack_fleet("dev"))


@pytest.fixture(scope="module")
def prod():
    return queue(stack_fleet("prod"))


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    layer = tmp_path_factory.mktemp("kafka-layer")
    (layer / "python").mkdir()
    return queue(fleet(queueKind="kafka", maxSize=12), vpc_id="vpc-0123456789abcdef0", subnet_ids=SUBNETS,
                 client_security_group_ids=["sg-0api"], kafka_layer_dir=str(layer))


def test_dlq_redrive_leaves_room_for_hand_backs_beyond_the_counted_attempts(dev):
    # Attempts are counted in the job record (maxReceiveCount); SQS also counts hand-backs and receives
    # that died before the record was claimed, so its redrive allows HANDBACK_ALLOWANCE more receives.
    main = dev.one(QUEUE, "queue-queue").inputs
    redrive = json.loads(main["redrivePolicy"])
    assert redrive == {"deadLetterTargetArn": dev.outputs["dlq_arn"], "maxReceiveCount": 3 + HANDBACK_ALLOWANCE}
    custom = queue(fleet(maxReceiveCount=7)).one(QUEUE, "queue-queue").inputs
    assert json.loads(custom["redrivePolicy"])["maxReceiveCount"] == 7 + HANDBACK_ALLOWANCE
    allow = json.loads(dev.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy").inputs["redriveAllowPolicy"])
    assert allow == {"redrivePermission": "byQueue", "sourceQueueArns": [dev.outputs["queue_arn"]]}


def test_dlq_keeps_messages_fourteen_days(dev):
    assert dev.one(QUEUE, "queue-dlq").inputs["messageRetentionSeconds"] == 14 * 24 * 3600


def test_dlq_visibility_lets_lambda_create_its_consumer_s_event_source(dev):
    """Lambda refuses an SQS event source whose function timeout exceeds the queue's visibility timeout
    (AWS default 30 s); AWS recommends six times the function timeout."""
    visibility = dev.one(QUEUE, "queue-dlq").inputs.get("visibilityTimeoutSeconds", 30)
    assert visibility == DLQ_VISIBILITY_TIMEOUT_SECONDS == 6 * DLQ_CONSUMER_TIMEOUT_SECONDS


def test_visibility_is_a_short_lease_independent_of_the_job_time_limit(dev, prod):
    # A dead worker's job is retried within a minute whatever maxJobSeconds is (dev 300 s, prod 600 s):
    # the agent's heartbeat renews the lease every third of it while the job runs.
    for built in (dev, prod):
        assert built.one(QUEUE, "queue-queue").inputs["visibilityTimeoutSeconds"] == LEASE_SECONDS == 30


def test_queues_are_encrypted_and_long_polled(dev):
    for q in each(dev, QUEUE):
        assert q.inputs.get("sqsManagedSseEnabled") is True or q.inputs.get("kmsMasterKeyId")
        assert q.inputs["receiveWaitTimeSeconds"] == 20
        assert not q.inputs.get("fifoQueue")


def test_sqs_backlog_metric_and_identifiers(dev):
    assert dev.outputs["backlog_metric"] == {"namespace": "AWS/SQS",
                                             "metric_name": "ApproximateNumberOfMessagesVisible",
                                             "dimensions": {"QueueName": "genai-dev-jobs"}}
    assert dev.outputs["queue_url"].endswith("/genai-dev-jobs")
    assert dev.outputs["queue_arn"].endswith(":genai-dev-jobs")
    assert "cluster_arn" not in dev.outputs and not dev.of_type(MSK)


def test_msk_uses_iam_auth_in_private_subnets(kafka):
    cluster = kafka.one(MSK).inputs
    assert cluster["clientAuthentication"] == {"sasl": {"iam": {"enabled": True}}}
    assert cluster["vpcConfigs"][0]["subnetIds"] == SUBNETS
    assert not kafka.of_type(QUEUE)


def test_msk_is_reachable_only_from_client_security_groups(kafka):
    cluster_sg = kafka.one(MSK).inputs["vpcConfigs"][0]["securityGroupIds"]
    assert len(cluster_sg) == 1 and cluster_sg[0] != kafka.outputs["client_security_group_id"]
    ingress = kafka.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert ingress, "the brokers need ingress from their clients"
    for rule in ingress:
        assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (9098, 9098, "tcp")
        assert rule.inputs.get("referencedSecurityGroupId")
        assert not rule.inputs.get("cidrIpv4") and not rule.inputs.get("cidrIpv6")
    sources = {r.inputs["referencedSecurityGroupId"] for r in ingress}
    assert sources == {kafka.outputs["client_security_group_id"], "sg-0api"}
    sgs = kafka.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert len(sgs) == 2 and all(not sg.inputs.get("ingress") for sg in sgs)  # no inline (CIDR) rules


def test_kafka_clients_reach_the_brokers_and_the_aws_apis(kafka):
    """The API handler and the Kafka functions run in the VPC with the kafka-clients group alone; the provider
    drops AWS's default allow-all egress, so DynamoDB, SSM and CloudWatch need HTTPS out (through the NAT)."""
    client = kafka.outputs["client_security_group_id"]
    egress = [r.inputs for r in kafka.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
              if r.inputs["securityGroupId"] == client]
    to_brokers = [r for r in egress if r.get("referencedSecurityGroupId")]
    https = [r for r in egress if r.get("cidrIpv4") == "0.0.0.0/0"]
    assert [(r["fromPort"], r["toPort"]) for r in to_brokers] == [(9098, 9098)]
    assert [(r["ipProtocol"], r["fromPort"], r["toPort"]) for r in https] == [("tcp", 443, 443)]
    assert len(egress) == 2


def test_kafka_backlog_metric_and_iam_identifiers(kafka):
    assert kafka.outputs["backlog_metric"] == {"namespace": metric_names.NAMESPACE,
                                               "metric_name": metric_names.KAFKA_BACKLOG,
                                               "dimensions": {metric_names.DIM_STACK: "dev"}}
    cluster_arn = kafka.outputs["cluster_arn"]
    assert cluster_arn.startswith("arn:aws:kafka:us-east-1:123456789012:cluster/")
    assert kafka.outputs["topic_arn"] == cluster_arn.replace(":cluster/", ":topic/") + "/genai-jobs"
    assert kafka.outputs["group_arn"] == cluster_arn.replace(":cluster/", ":group/") + "/genai-workers"
    assert kafka.outputs["bootstrap_brokers"].endswith(":9098")
    assert kafka.outputs["subnet_ids"] == SUBNETS and kafka.outputs["topic"] == "genai-jobs"
    assert "queue_url" not in kafka.outputs


def test_kafka_needs_the_network():
    with pytest.raises(ValueError, match="vpc_id and subnet_ids"):
        cfg = fleet(queueKind="kafka")
        RequestQueue("queue", RequestQueueArgs(stack=cfg.identity, queue=cfg.queue, storage=cfg.storage,
                                               max_workers=cfg.cluster.max_size))


def test_partitions_cover_the_largest_fleet():
    assert kafka_partitions(fleet(maxSize=3).cluster.max_size) == 6
    assert kafka_partitions(stack_fleet("prod").cluster.max_size) == 40


def test_children_are_parented(dev, kafka):
    kids = children(dev, TOKEN)
    assert len(kids) == len(dev.recording.resources) - 1 and all(k.name.startswith("queue-") for k in kids)
    # kafka: the queue's own children plus the KafkaFunctions component's, and nothing outside the tree
    kids = children(kafka, TOKEN) + children(kafka, "genai:queue:KafkaFunctions")
    assert len(kids) == len(kafka.recording.resources) - 1 and all(k.name.startswith("queue-") for k in kids)


def test_queues_declare_the_message_size_the_api_checks_against(dev):
    """AWS's default can change and moto's is 1 MiB: the limit the API sizes jobs against is declared."""
    from runtime.queues.base import SQS_MAX_MESSAGE_BYTES

    assert SQS_MAX_MESSAGE_BYTES == 262_144
    for name in ("queue-queue", "queue-dlq"):  # the DLQ must take every message the queue redrives to it
        assert dev.one(QUEUE, name).inputs["maxMessageSize"] == SQS_MAX_MESSAGE_BYTES


def test_model_groups_get_a_queue_each_with_the_same_dlq_and_a_summed_backlog():
    built = queue(fleet(modelGroups='{"sdxl": ["sdxl-base"], "flux": ["flux-dev"]}'))
    main = built.one(QUEUE, "queue-queue").inputs
    groups = {name: built.one(QUEUE, f"queue-queue-{name}").inputs for name in ("sdxl", "flux")}
    assert groups["sdxl"]["name"] == "genai-dev-jobs-sdxl" and groups["flux"]["name"] == "genai-dev-jobs-flux"
    for inputs in groups.values():  # same lease, redrive, size limit, encryption as the main queue
        for key in ("redrivePolicy", "visibilityTimeoutSeconds", "maxMessageSize", "sqsManagedSseEnabled",
                    "receiveWaitTimeSeconds"):
            assert inputs[key] == main[key], key
    allow = json.loads(built.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy").inputs["redriveAllowPolicy"])
    assert len(allow["sourceQueueArns"]) == 3
    endpoint = built.component.endpoint
    assert [(g.group, g.models) for g in endpoint.groups] == [("sdxl", ("sdxl-base",)), ("flux", ("flux-dev",))]
    backlog = built.outputs["backlog_metric"]
    assert backlog["dimensions"] == {"QueueName": main["name"]}
    assert backlog["extra_dimensions"] == [{"QueueName": "genai-dev-jobs-sdxl"}, {"QueueName": "genai-dev-jobs-flux"}]
    assert "extra_dimensions" not in queue(fleet()).outputs["backlog_metric"]
