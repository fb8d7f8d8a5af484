"""The Kafka backlog metric: jobs waiting = the workers' consumer-group lag, published each minute.

SQS publishes ``ApproximateNumberOfMessagesVisible`` itself; Kafka has no such metric, so a scheduled
Lambda (components/kafka_functions.py, EventBridge ``rate(1 minute)``) runs ``lambda_handler``:

    lag = sum over the topic's partitions of (end offset - committed offset of the group)

A partition the group never committed counts from its low watermark (the workers start there:
``auto.offset.reset=earliest``), so an empty group at scale-from-zero reports every waiting job. The
value goes to ``GenAIFleet/KafkaBacklog`` with the dimension ``Stack=<stack>``: the metric and dimensions
that RequestQueue.backlog_metric names and the scaling policies and alarms read (runtime/metric_names).

Reads use a consumer of the workers' group that never subscribes (so it never joins or rebalances the
group): metadata, ListOffsets and OffsetFetch only. MSK IAM: ``kafka-cluster:Connect`` on the cluster,
``DescribeTopic`` on the jobs topic, ``DescribeGroup`` on the group.

Environment: GENAI_KAFKA_BOOTSTRAP, GENAI_KAFKA_TOPIC (genai-jobs), GENAI_KAFKA_GROUP (genai-workers),
GENAI_STACK, GENAI_KAFKA_IAM (true), AWS_REGION (set by Lambda).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from runtime import metric_names as m
from runtime.queue_names import KAFKA_GROUP, KAFKA_TOPIC
from runtime.queues.base import QueueUnavailableError
from runtime.queues.kafka_auth import security_config

log = logging.getLogger(__name__)

OFFSET_UNSET = -1001  # librdkafka's OFFSET_INVALID: the group has no committed offset for the partition


@dataclass(frozen=True)
class Lag:
    """Consumer lag of one group on one topic."""

    total: int
    partitions: dict[int, int] = field(default_factory=dict)  # partition -> lag
    uncommitted: tuple[int, ...] = ()  # partitions the group never committed (counted from the low watermark)


def read_lag(bootstrap: str, topic: str, group: str, iam_auth: bool = True, region: str | None = None,
             timeout_s: float = 10.0, extra: dict[str, Any] | None = None) -> Lag:
    """Lag of ``group`` on ``topic``; raises QueueUnavailableError when the cluster cannot tell."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "client.id": "genai-lag-publisher", **security_config(iam_auth, region), **(extra or {})})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise QueueUnavailableError(f"topic {topic} not found: {metadata and metadata.error}")
        tps = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        committed = {tp.partition: tp for tp in consumer.committed(tps, timeout=timeout_s)}
        lags, uncommitted = {}, []
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            done = committed[tp.partition]
            if done.error is not None:
                raise QueueUnavailableError(f"committed offset of {topic}/{tp.partition}: {done.error}")
            if done.offset < 0:
                uncommitted.append(tp.partition)
                start = low
            else:
                start = max(done.offset, low)  # retention may have deleted what the group never read
            lags[tp.partition] = max(0, high - start)
        return Lag(total=sum(lags.values()), partitions=lags, uncommitted=tuple(uncommitted))
    except KafkaException as exc:
        raise QueueUnavailableError(f"reading the lag of {group} on {topic}: {exc}") from exc
    finally:
        consumer.close()


def publish(cloudwatch: Any, stack: str, lag: Lag) -> dict[str, Any]:
    """Put the backlog datum; returns what was sent (for logs and tests)."""
    datum = {"MetricName": m.KAFKA_BACKLOG, "Dimensions": [{"Name": m.DIM_STACK, "Value": stack}],
             "Value": float(lag.total), "Unit": "Count"}
    cloudwatch.put_metric_data(Namespace=m.NAMESPACE, MetricData=[datum])
    return datum


def lambda_handler(event: Any, context: Any, cloudwatch: Any = None) -> dict[str, Any]:
    env = os.environ
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    bootstrap, stack = env.get("GENAI_KAFKA_BOOTSTRAP"), env.get("GENAI_STACK")
    if not bootstrap or not stack:
        raise RuntimeError("GENAI_KAFKA_BOOTSTRAP and GENAI_STACK must be set for the lag publisher")
    topic, group = env.get("GENAI_KAFKA_TOPIC", KAFKA_TOPIC), env.get("GENAI_KAFKA_GROUP", KAFKA_GROUP)
    lag = read_lag(bootstrap, topic, group, iam_auth=env.get("GENAI_KAFKA_IAM", "true").lower() != "false",
                   region=region)
    if cloudwatch is None:
        from runtime.aws_clients import client

        cloudwatch = client("cloudwatch", profile="function", region=region,
                            endpoint_url=env.get("GENAI_AWS_ENDPOINT_URL"))
    publish(cloudwatch, stack, lag)
    log.info("kafka backlog %d (%s)", lag.total, {"partitions": lag.partitions, "uncommitted": lag.uncommitted})
    return {"backlog": lag.total, "partitions": {str(k): v for k, v in lag.partitions.items()},
            "uncommitted": list(lag.uncommitted)}
