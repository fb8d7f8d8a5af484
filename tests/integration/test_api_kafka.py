"""The job API with queueKind kafka: jobs land on the mock cluster's topic, keyed by job id."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from fleetdev.local_server import LocalApiServer
from runtime.api.auth import generate_key
from runtime.api.handler import ApiConfig, build_app
from runtime.queues import QueueMessage
from runtime.queues.kafka_producer import KafkaJobProducer

pytestmark = pytest.mark.integration
KEY, _ = generate_key("kafka")
JOB = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a red fox"}}


def _consume(bootstrap, topic, expected, timeout_s=15.0):
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    try:
        for _ in range(int(timeout_s / 0.5)):  # bounded
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg)
            if len(got) >= expected:
                break
    finally:
        consumer.close()
    return got


def test_producer_sends_contract_message(kafka_bootstrap):
    topic = f"jobs-{uuid.uuid4().hex[:8]}"
    # The mock cluster creates topics on first produce; MSK Serverless needs ensure_topic (create_topic=True).
    producer = KafkaJobProducer(kafka_bootstrap, topic=topic)
    ref = producer.send(QueueMessage(job_id="j_TEST", job={"model": "m"}, enqueued_at=1.5))
    producer.close()
    assert ref.startswith(f"{topic}/")
    (msg,) = _consume(kafka_bootstrap, topic, 1)
    assert msg.key() == b"j_TEST" and dict(msg.headers())["v"] == b"1"
    assert json.loads(msg.value()) == {"v": 1, "job_id": "j_TEST", "enqueued_at": 1.5, "job": {"model": "m"}}


def test_api_enqueues_on_kafka_with_idempotency_and_cancel(moto_endpoint, job_table, kafka_bootstrap):
    topic = f"jobs-{uuid.uuid4().hex[:8]}"
    cfg = ApiConfig(job_table=job_table, queue_kind="kafka", kafka_bootstrap=kafka_bootstrap, kafka_topic=topic,
                    kafka_iam=False, kafka_create_topic=False, api_keys=(KEY,), endpoint_url=moto_endpoint,
                    region="us-east-1")
    app = build_app(cfg)
    try:
        with LocalApiServer(app) as server, httpx.Client(base_url=server.url, timeout=30,
                                                         headers={"x-api-key": KEY}) as client:
            first = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "k1"})
            again = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "k1"})
            assert first.status_code == again.status_code == 202
            job_id = first.json()["id"]
            assert again.json()["id"] == job_id
            polled = client.get(f"/v1/jobs/{job_id}").json()
            assert polled["status"] == "queued" and "queue_depth" not in polled["queue"]  # Kafka: no cheap depth
            assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "canceled"
            assert client.post("/v1/jobs", json=JOB, headers={"x-api-key": "bad"}).status_code == 403
    finally:
        app.producer.close()
    msgs = _consume(kafka_bootstrap, topic, 2, timeout_s=5)
    assert [m.key().decode() for m in msgs] == [job_id]  # the replay was not produced twice
    assert QueueMessage.from_json(msgs[0].value()).job["inputs"]["prompt"] == "a red fox"
