"""A consumer group's lag on a Kafka topic: the jobs waiting for the workers of that group.

    lag = sum over the topic's partitions of (end offset - committed offset of the group)

A partition the group never committed counts from its low watermark (the workers start there:
``auto.offset.reset=earliest``), so an empty group at scale-from-zero reports every waiting job.
Read by the lag publisher (runtime/functions/kafka_lag.py, the backlog metric) and by the worker's
affinity consumer (its per-group backlog probe).

Reads use a consumer of the group that never subscribes (so it never joins or rebalances the group):
metadata, ListOffsets and OffsetFetch only. MSK IAM: ``kafka-cluster:Connect`` on the cluster,
``DescribeTopic`` on the topic, ``DescribeGroup`` on the group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.queues.base import QueueUnavailableError
from runtime.queues.kafka_auth import security_config

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
