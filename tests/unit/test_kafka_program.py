"""The program with ``queueKind: kafka`` under mocks: the topics made at deploy time, the lag publisher on a
one-minute schedule publishing exactly what the scaling policy reads, and each Kafka client's IAM as the
MSK developer guide's "common use cases" table lists it; the policy pack passes.

MSK's IAM table (docs.aws.amazon.com/msk/latest/developerguide/iam-access-control-use-cases.html and
kafka-actions.html): the actions each use case needs, and the resource type each action applies to.
"""

from __future__ import annotations

import json

import pytest

from components.request_queue import KAFKA_DLQ_TOPIC, KAFKA_GROUP, KAFKA_TOPIC, kafka_partitions
from runtime import metric_names as m
from tests.unit.component_harness import stack_fleet
from tools import preview

USE_CASES = {
    "produce idempotently": {"Connect", "DescribeTopic", "WriteData", "WriteDataIdempotently"},
    "consume with a group": {"Connect", "DescribeTopic", "DescribeGroup", "AlterGroup", "ReadData"},
    "produce": {"Connect", "DescribeTopic", "WriteData"},
    "create a topic": {"Connect", "CreateTopic"},
}
RESOURCE_OF = {"Connect": "cluster", "WriteDataIdempotently": "cluster", "DescribeGroup": "group",
               "AlterGroup": "group"}  # every other action here applies to a topic
# MSK Serverless adds ~$560/month (cluster-hours); the API function runs in the VPC, so it needs a NAT gateway
OVERRIDES = {"queueKind": "kafka", "natGateways": "single", "monthlyBudgetUsd": 2500}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    layer = tmp_path_factory.mktemp("layer")
    (layer / "python").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENAI_KAFKA_LAYER_DIR", str(layer))  # no pip download of the arm64 wheels under mocks
        return preview.preview("dev", OVERRIDES)


def _cluster(result) -> str:
    return result.recording.one("aws:msk/serverlessCluster:ServerlessCluster").outputs["arn"]


def _arn(cluster: str, kind: str, name: str | None = None) -> str:
    return cluster if kind == "cluster" else cluster.replace(":cluster/", f":{kind}/") + f"/{name}"


def _grants(document: dict) -> set[tuple[str, str]]:
    out = set()
    for st in document["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        out |= {(a, r) for a in actions for r in resources}
    return out


def _role_policy(result, role: str) -> dict:
    policy = result.recording.one("aws:iam/rolePolicy:RolePolicy", role.removesuffix("-role") + "-policy")
    return json.loads(policy.inputs["policy"])


def _worker_policy(result) -> dict:
    (doc,) = [json.loads(p.inputs["policy"]) for p in result.recording.of_type("aws:iam/rolePolicy:RolePolicy")
              if "kafka-cluster:ReadData" in p.inputs["policy"]]
    return doc


def _assert_use_case(grants: set[tuple[str, str]], case: str, cluster: str, topic: str, group: str = "") -> None:
    for action in USE_CASES[case]:
        kind = RESOURCE_OF.get(action, "topic")
        resource = _arn(cluster, kind, {"topic": topic, "group": group}.get(kind))
        assert (f"kafka-cluster:{action}", resource) in grants, f"{case}: kafka-cluster:{action} on {resource}"


def test_policy_pack_passes(result):
    assert result.mandatory == [], [(v.policy, v.resource, v.message) for v in result.mandatory]


def test_only_the_budget_flags_kafka_at_the_dev_budget(tmp_path, monkeypatch):
    (tmp_path / "python").mkdir()
    monkeypatch.setenv("GENAI_KAFKA_LAYER_DIR", str(tmp_path))
    flagged = {v.policy for v in preview.preview("dev", {"queueKind": "kafka", "natGateways": "single"}).mandatory}
    assert flagged <= {"monthly-cost-budget"}, flagged


def test_topics_are_created_at_deploy_with_partitions_and_retention(result):
    invocation = result.recording.one("aws:lambda/invocation:Invocation").inputs
    creator = result.recording.one("aws:lambda/function:Function", "queue-kafka-fns-topics-fn")
    assert invocation["functionName"] == creator.outputs["name"]
    topics = {t["name"]: t for t in json.loads(invocation["input"])["topics"]}
    cfg = stack_fleet("dev", **OVERRIDES)
    assert topics[KAFKA_TOPIC]["partitions"] == kafka_partitions(cfg.cluster.max_size) >= cfg.cluster.max_size
    assert topics[KAFKA_TOPIC]["config"] == {"retention.ms": str(7 * 24 * 3600 * 1000)}
    assert topics[KAFKA_DLQ_TOPIC] == {"name": KAFKA_DLQ_TOPIC, "partitions": 1,
                                       "config": {"retention.ms": str(14 * 24 * 3600 * 1000)}}
    assert creator.inputs["handler"] == "runtime.functions.kafka_topics.lambda_handler"
    assert invocation["triggers"]["topics"], "a changed topic spec must run the creator again"
    cluster = _cluster(result)
    grants = _grants(_role_policy(result, "queue-kafka-fns-topics-role"))
    for name in (KAFKA_TOPIC, KAFKA_DLQ_TOPIC):
        _assert_use_case(grants, "create a topic", cluster, name)
    assert {r for a, r in grants if a.startswith("kafka-cluster:")} == {
        cluster, _arn(cluster, "topic", KAFKA_TOPIC), _arn(cluster, "topic", KAFKA_DLQ_TOPIC)}


def test_lag_publisher_runs_each_minute_and_feeds_the_scaling_policy(result):
    rec = result.recording
    fn = rec.one("aws:lambda/function:Function", "queue-kafka-fns-lag-fn")
    env = fn.inputs["environment"]["variables"]
    assert fn.inputs["handler"] == "runtime.functions.kafka_lag.lambda_handler"
    assert (env["GENAI_KAFKA_TOPIC"], env["GENAI_KAFKA_GROUP"]) == (KAFKA_TOPIC, KAFKA_GROUP)
    assert fn.inputs["vpcConfig"]["securityGroupIds"] == [
        rec.one("aws:ec2/securityGroup:SecurityGroup", "queue-kafka-clients").outputs["id"]]
    rule = rec.one("aws:cloudwatch/eventRule:EventRule", "queue-kafka-fns-lag-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(1 minute)"
    target = rec.one("aws:cloudwatch/eventTarget:EventTarget", "queue-kafka-fns-lag-target").inputs
    assert target["arn"] == fn.outputs["arn"] and target["rule"] == rule.outputs["name"]
    permission = rec.one("aws:lambda/permission:Permission", "queue-kafka-fns-lag-invoke").inputs
    assert permission["principal"] == "events.amazonaws.com" and permission["sourceArn"] == rule.outputs["arn"]
    # what kafka_lag.publish sends == what the backlog target tracks
    tracking = rec.one("aws:autoscaling/policy:Policy", "cluster-spot-backlog-target").inputs
    (backlog,) = [q for q in tracking["targetTrackingConfiguration"]["customizedMetricSpecification"]["metrics"]
                  if q["id"] == "backlog"]
    metric = backlog["metricStat"]["metric"]
    assert (metric["namespace"], metric["metricName"]) == (m.NAMESPACE, m.KAFKA_BACKLOG)
    assert metric["dimensions"] == [{"name": m.DIM_STACK, "value": env["GENAI_STACK"]}]


def test_lag_publisher_reads_offsets_only(result):
    cluster = _cluster(result)
    doc = _role_policy(result, "queue-kafka-fns-lag-role")
    kafka = {(a, r) for a, r in _grants(doc) if a.startswith("kafka-cluster:")}
    assert kafka == {("kafka-cluster:Connect", cluster),
                     ("kafka-cluster:DescribeTopic", _arn(cluster, "topic", KAFKA_TOPIC)),
                     ("kafka-cluster:DescribeGroup", _arn(cluster, "group", KAFKA_GROUP))}
    (metrics,) = [st for st in doc["Statement"] if st["Action"] == ["cloudwatch:PutMetricData"]]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": m.NAMESPACE}}


def test_api_produces_idempotently_and_creates_no_topic(result):
    cluster = _cluster(result)
    doc = _role_policy(result, "api-handler-role")
    grants = _grants(doc)
    _assert_use_case(grants, "produce idempotently", cluster, KAFKA_TOPIC)
    assert not any(a == "kafka-cluster:CreateTopic" for a, _ in grants)
    env = result.recording.one("aws:lambda/function:Function", "api-handler-fn").inputs["environment"]["variables"]
    assert env["GENAI_KAFKA_CREATE_TOPIC"] == "false"


def test_workers_consume_with_their_group_and_write_the_dlq(result):
    cluster = _cluster(result)
    grants = _grants(_worker_policy(result))
    _assert_use_case(grants, "consume with a group", cluster, KAFKA_TOPIC, KAFKA_GROUP)
    _assert_use_case(grants, "produce", cluster, KAFKA_DLQ_TOPIC)
    assert ("kafka-cluster:WriteData", _arn(cluster, "topic", KAFKA_TOPIC)) not in grants
    assert not any(a == "kafka-cluster:CreateTopic" for a, _ in grants)


@pytest.mark.parametrize("role", ["queue-kafka-fns-topics-role", "queue-kafka-fns-lag-role", "api-handler-role"])
def test_kafka_roles_are_parliament_clean(result, role):
    from tests.unit.test_cluster_iam import assert_parliament_clean

    assert_parliament_clean(_role_policy(result, role))
