"""The Kafka backlog metric against librdkafka's mock cluster and moto's CloudWatch: lag = end offsets -
committed offsets of the workers' group, an empty group (scale from zero) counting every waiting job,
published as GenAIFleet/KafkaBacklog{Stack} by the scheduled function's handler."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest

from runtime import metric_names as m
from runtime.functions.kafka_lag import lambda_handler
from runtime.queues.base import QueueUnavailableError
from runtime.queues.kafka_lag import read_lag
from tests.integration.test_kafka_consumer import _consumer, _produce, _receive

pytestmark = pytest.mark.integration


def _names() -> tuple[str, str]:
    return f"jobs-{uuid.uuid4().hex[:6]}", f"genai-workers-{uuid.uuid4().hex[:6]}"


def test_empty_group_counts_every_waiting_job(kafka_bootstrap):
    topic, group = _names()
    _produce(kafka_bootstrap, topic, 7, key=None)  # spread over the mock's partitions
    lag = read_lag(kafka_bootstrap, topic, group, iam_auth=False)
    assert lag.total == 7
    assert set(lag.uncommitted) == set(lag.partitions) and len(lag.partitions) >= 2
    assert sum(lag.partitions.values()) == 7


def test_lag_drops_as_the_workers_commit(kafka_bootstrap):
    topic, group = _names()
    _produce(kafka_bootstrap, topic, 5)
    consumer = _consumer(kafka_bootstrap, topic, group, "i-lag")
    try:
        for _ in range(2):
            consumer.ack(_receive(consumer))
        lag = read_lag(kafka_bootstrap, topic, group, iam_auth=False)
        assert lag.total == 3
        busy = _receive(consumer)  # handed out, not yet committed: still counted (it is not done)
        assert read_lag(kafka_bootstrap, topic, group, iam_auth=False).total == 3
        consumer.ack(busy)
        assert read_lag(kafka_bootstrap, topic, group, iam_auth=False).total == 2
    finally:
        consumer.close()
    # the reader never joined the group: its members and assignment are untouched, nothing was committed
    assert read_lag(kafka_bootstrap, topic, f"{group}-other", iam_auth=False).total == 5


def test_missing_topic_is_an_error_not_a_zero(kafka_bootstrap):
    with pytest.raises(QueueUnavailableError):
        read_lag(kafka_bootstrap, "", "g", iam_auth=False, timeout_s=3)


def test_handler_publishes_the_metric_the_scaling_policy_reads(kafka_bootstrap, moto_endpoint, aws_clients,
                                                               monkeypatch):
    topic, group = _names()
    _produce(kafka_bootstrap, topic, 4, key=None)
    stack = f"stack-{uuid.uuid4().hex[:6]}"
    for key, value in {"GENAI_KAFKA_BOOTSTRAP": kafka_bootstrap, "GENAI_KAFKA_TOPIC": topic,
                       "GENAI_KAFKA_GROUP": group, "GENAI_STACK": stack, "GENAI_KAFKA_IAM": "false",
                       "GENAI_AWS_ENDPOINT_URL": moto_endpoint}.items():
        monkeypatch.setenv(key, value)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    result = lambda_handler({"source": "aws.events"}, None)
    assert result["backlog"] == 4
    cloudwatch = aws_clients("cloudwatch")
    metrics = cloudwatch.list_metrics(Namespace=m.NAMESPACE, MetricName=m.KAFKA_BACKLOG,
                                      Dimensions=[{"Name": m.DIM_STACK, "Value": stack}])["Metrics"]
    assert [x["Dimensions"] for x in metrics] == [[{"Name": m.DIM_STACK, "Value": stack}]]
    deadline = time.monotonic() + 10
    points: list = []
    while time.monotonic() < deadline and not points:
        points = cloudwatch.get_metric_statistics(
            Namespace=m.NAMESPACE, MetricName=m.KAFKA_BACKLOG, Dimensions=[{"Name": m.DIM_STACK, "Value": stack}],
            StartTime=started, EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1), Period=60,
            Statistics=["Maximum"])["Datapoints"]
    assert [p["Maximum"] for p in points] == [4.0]


def test_handler_needs_its_settings(monkeypatch):
    monkeypatch.delenv("GENAI_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(RuntimeError, match="GENAI_KAFKA_BOOTSTRAP"):
        lambda_handler({}, None)
