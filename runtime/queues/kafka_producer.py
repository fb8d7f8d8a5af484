"""Kafka producer (confluent-kafka): topic ``genai-jobs``, key = job id, header ``v: 1``.

``send`` waits for the broker's acknowledgement (``acks=all``, idempotent producer) up to
``delivery_timeout_s`` so the API only answers 202 for a job that is durably on the topic.
On MSK Serverless the client authenticates with IAM (SASL/OAUTHBEARER, token from
``aws-msk-iam-sasl-signer-python``, see kafka_auth); the local mock cluster and tests use PLAINTEXT
(``iam_auth=False``). On AWS the topics are created at deploy time (kafka_topics, invoked by the stack),
so the API runs with ``create_topic=False``; ``ensure_topic`` remains for local setups without that step.
MSK IAM: idempotent produce needs ``kafka-cluster:WriteDataIdempotently`` on the cluster besides
``WriteData`` / ``DescribeTopic`` on the topic (components/api.py grants exactly that).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from runtime.queue_names import KAFKA_TOPIC
from runtime.queues.base import JobQueueProducer, QueueMessage, QueueUnavailableError
from runtime.queues.kafka_auth import security_config

log = logging.getLogger(__name__)

DEFAULT_TOPIC = KAFKA_TOPIC


def client_config(bootstrap_servers: str, iam_auth: bool, region: str | None) -> dict[str, Any]:
    """librdkafka settings shared by producer and admin client."""
    return {"bootstrap.servers": bootstrap_servers, "client.id": "genai-fleet-api",
            **security_config(iam_auth, region)}


class KafkaJobProducer(JobQueueProducer):
    def __init__(self, bootstrap_servers: str, topic: str = DEFAULT_TOPIC, iam_auth: bool = False,
                 region: str | None = None, delivery_timeout_s: float = 10.0, create_topic: bool = False,
                 partitions: int = 6, extra_config: dict[str, Any] | None = None):
        from confluent_kafka import Producer

        self.topic = topic
        self.delivery_timeout_s = delivery_timeout_s
        self._base = client_config(bootstrap_servers, iam_auth, region)
        self._producer = Producer({**self._base, "enable.idempotence": True, "acks": "all", "linger.ms": 0,
                                   "message.timeout.ms": int(delivery_timeout_s * 1000),
                                   **(extra_config or {})})
        self._lock = threading.Lock()
        self._topic_ready = not create_topic
        self._partitions = partitions

    def ensure_topic(self) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self._base)
        try:
            metadata = admin.list_topics(timeout=self.delivery_timeout_s)
            if self.topic not in metadata.topics:
                futures = admin.create_topics([NewTopic(self.topic, num_partitions=self._partitions)])
                futures[self.topic].result(timeout=self.delivery_timeout_s)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise QueueUnavailableError(f"could not create Kafka topic {self.topic}: {exc}") from exc
        except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError on 3.11+
            raise QueueUnavailableError(f"creating Kafka topic {self.topic} timed out") from exc
        self._topic_ready = True

    def send(self, message: QueueMessage) -> str:
        from confluent_kafka import KafkaException

        if not self._topic_ready:
            self.ensure_topic()
        result: dict[str, Any] = {}
        done = threading.Event()

        def on_delivery(err: Any, msg: Any) -> None:
            result["err"], result["msg"] = err, msg
            done.set()

        try:
            with self._lock:
                self._producer.produce(self.topic, key=message.job_id.encode(), value=message.to_json().encode(),
                                       headers={"v": str(message.v)}, on_delivery=on_delivery)
            remaining = self.delivery_timeout_s
            while not done.is_set() and remaining > 0:  # bounded: poll serves the delivery callback
                self._producer.poll(0.05)
                remaining -= 0.05
        except (KafkaException, BufferError) as exc:
            raise QueueUnavailableError(f"Kafka produce failed for {message.job_id}: {exc}") from exc
        if not done.is_set():
            raise QueueUnavailableError(f"Kafka delivery of {message.job_id} not confirmed in "
                                        f"{self.delivery_timeout_s:g}s")
        if result["err"] is not None:
            raise QueueUnavailableError(f"Kafka delivery of {message.job_id} failed: {result['err']}")
        msg = result["msg"]
        return f"{msg.topic()}/{msg.partition()}/{msg.offset()}"

    def close(self) -> None:
        self._producer.flush(self.delivery_timeout_s)
