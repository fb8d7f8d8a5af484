"""Model affinity on Kafka (librdkafka's mock cluster): the worker entry point builds an affinity consumer
over a topic per model group, probes each topic's lag, and drains one group before switching."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
from confluent_kafka import Producer

from runtime.agent_config import parse
from runtime.queues.affinity import AffinityConsumer
from runtime.queues.base import QueueMessage
from runtime.worker.__main__ import _consumer

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, model: str, n: int) -> list[str]:
    producer = Producer({"bootstrap.servers": bootstrap})
    ids = []
    for i in range(n):
        job_id = f"j_{uuid.uuid4().hex[:8]}_{i}"
        producer.produce(topic, key=job_id.encode(), value=QueueMessage(job_id, {"model": model}).to_json().encode())
        ids.append(job_id)
    assert producer.flush(10) == 0
    return ids


def test_kafka_topics_per_group_are_drained_one_group_at_a_time(kafka_bootstrap):
    suffix = uuid.uuid4().hex[:6]
    main, sdxl = f"jobs-{suffix}", f"jobs-{suffix}-sdxl"
    config = parse({
        "stack": "test", "region": "us-east-1", "job_table": "jobs", "backend": "test-pattern",
        "outputs": {"bucket": "b", "cdn_base_url": "http://cdn"}, "worker_id": "w1",
        "lifecycle": {"imds_enabled": False},
        "queue": {"kind": "kafka", "bootstrap_servers": kafka_bootstrap, "topic": main, "group_id": f"g-{suffix}",
                  "kafka_iam_auth": False, "kafka_session_timeout_ms": 6000, "affinity_switch_after_seconds": 1,
                  "groups": [{"name": "sdxl", "models": ["sdxl-base"], "topic": sdxl}]}})
    sd15_jobs = _produce(kafka_bootstrap, main, "sd15", 2)
    sdxl_jobs = _produce(kafka_bootstrap, sdxl, "sdxl-base", 3)
    consumer = _consumer(config, "w1")
    assert isinstance(consumer, AffinityConsumer) and set(consumer.queues) == {"default", "sdxl"}
    order: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while len(order) < 5 and time.monotonic() < deadline:
            for job in consumer.receive(1, 1.0):
                consumer.note_loaded(job.message.job["model"])
                order.append(job.message.job_id)
                consumer.ack(job)
    finally:
        consumer.close()
    assert sorted(order) == sorted(sd15_jobs + sdxl_jobs)
    groups = ["sdxl" if j in sdxl_jobs else "default" for j in order]
    assert sum(a != b for a, b in itertools.pairwise(groups)) == 1, groups  # one switch only
