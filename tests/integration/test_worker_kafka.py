"""The worker agent on Kafka (librdkafka mock cluster): consumer settings (static membership, manual
commit, MSK IAM), commit only after the record is final (a new member does not redo it), poison jobs
to the DLQ topic and recorded failed."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer

from fleetdev.worker_support import Stack, make_agent
from runtime.backends.base import BackendError
from runtime.backends.test_pattern import TestPatternBackend
from runtime.jobs.schema import validate_job
from runtime.jobs.store import new_record
from runtime.queues.base import QueueMessage
from runtime.queues.kafka_consumer import KafkaConsumer, consumer_config
from runtime.queues.kafka_producer import KafkaJobProducer

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


def submit(stack: Stack, producer: KafkaJobProducer) -> str:
    spec = validate_job({"model": "sd15", "inputs": {"prompt": "a cat", "width": 64, "height": 64, "seed": 2}})
    record = new_record(spec, owner="tests")
    stack.store.create(record)
    producer.send(QueueMessage(job_id=record["job_id"], job=spec))
    return record["job_id"]


def kafka_agent(stack, bootstrap, topic, group, instance, backend=None, max_receive_count=2):
    config = stack.config(queue={"kind": "kafka", "bootstrap_servers": bootstrap, "topic": topic, "url": None,
                                 "group_id": group, "kafka_iam_auth": False, "max_receive_count": max_receive_count})
    conf = consumer_config(bootstrap, group, instance, config.max_job_seconds, False, "us-east-1",
                           {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    return make_agent(stack, config, backend=backend, consumer=KafkaConsumer(conf, topic, max_receive_count))


def test_config_uses_static_membership_manual_commit_and_msk_iam():
    conf = consumer_config("b-1:9098", "genai-workers", "i-0abc", 300, True, "eu-west-1")
    assert conf["group.instance.id"] == "i-0abc" and conf["enable.auto.commit"] is False
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    # the aws-msk-iam-sasl-signer-python README's confluent-kafka settings
    assert conf["sasl.mechanisms"] == "OAUTHBEARER" and conf["security.protocol"] == "SASL_SSL"
    assert callable(conf["oauth_cb"])
    plain = consumer_config("127.0.0.1:9092", "g", "i", 300, False, "eu-west-1")
    assert "sasl.mechanisms" not in plain and "security.protocol" not in plain


def test_job_runs_and_offset_is_committed_after_the_record(stack, kafka_bootstrap):
    topic, group = f"jobs-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    producer = KafkaJobProducer(kafka_bootstrap, topic=topic)
    job_id = submit(stack, producer)
    agent = kafka_agent(stack, kafka_bootstrap, topic, group, "i-k1")
    assert agent.run(max_jobs=1) == 1
    assert stack.store.get(job_id)["status"] == "succeeded"
    committed = agent.consumer._consumer.committed(agent.consumer._consumer.assignment(), timeout=10)
    assert sum(tp.offset for tp in committed if tp.offset >= 0) == 1
    agent.consumer.close()
    # a new member of the group starts after the committed offset: nothing to redo
    again = kafka_agent(stack, kafka_bootstrap, topic, group, "i-k2")
    assert again.run(idle_exit_seconds=2) == 0
    again.consumer.close()


class AlwaysFails(TestPatternBackend):
    def run(self, ctx):
        raise BackendError("poison")


def test_poison_job_goes_to_the_dlq_topic_and_is_failed(stack, kafka_bootstrap):
    topic, group = f"jobs-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    producer = KafkaJobProducer(kafka_bootstrap, topic=topic)
    job_id = submit(stack, producer)
    agent = kafka_agent(stack, kafka_bootstrap, topic, group, "i-k3", backend=AlwaysFails(delay_seconds=0))
    agent.run(max_jobs=2)
    record = stack.store.get(job_id)
    assert record["status"] == "failed" and len(record["attempt_errors"]) == 2
    agent.consumer.close()
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"dlq-{uuid.uuid4().hex[:6]}",
                       "auto.offset.reset": "earliest"})
    reader.subscribe([f"{topic}-dlq"])
    msg = None
    for _ in range(40):
        msg = reader.poll(0.5)
        if msg is not None and not msg.error():
            break
    reader.close()
    assert msg is not None and msg.key().decode() == job_id
    assert dict(msg.headers())["dlq-reason"].startswith(b"BackendError")
