"""Kafka consumer for the worker agent (runtime.queues.base.JobQueueConsumer), for Amazon MSK.

- Consumer group ``group_id`` with static membership (``group.instance.id`` = EC2 instance id), so an
  agent restart does not reshuffle partitions; ``enable.auto.commit`` off: ``ack`` commits the offset
  after the job record is final, synchronously.
- ``max.poll.interval.ms`` = (max_job_seconds + 120) s: the agent polls between jobs only.
- ``release`` seeks back to the message, so it is read again (by this member, or by the partition's
  next owner once this one closed without committing).
- Attempts per message are counted in memory for this member and seeded from the ``attempt`` header
  of a re-published message; ``dead_letter`` writes the message to ``<topic>-dlq`` and commits.
- MSK IAM: SASL_SSL + OAUTHBEARER with tokens from aws-msk-iam-sasl-signer-python; plain for the
  local mock cluster (``iam_auth=False``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from runtime.queues.base import JobQueueConsumer, MessageFormatError, QueueUnavailableError, ReceivedJob

log = logging.getLogger(__name__)


def consumer_config(bootstrap: str, group_id: str, instance_id: str, max_job_seconds: int, iam_auth: bool,
                    region: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The librdkafka settings (exposed for tests and docs)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "group.instance.id": instance_id,
        "client.id": f"genai-worker-{instance_id}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": (max_job_seconds + 120) * 1000,
        "session.timeout.ms": 45000,
        "partition.assignment.strategy": "cooperative-sticky",
    }
    if iam_auth:
        conf.update({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER",
                     "oauth_cb": msk_iam_token_callback(region)})
    conf.update(extra or {})
    return conf


def msk_iam_token_callback(region: str) -> Any:
    def callback(_config: str) -> tuple[str, float]:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000

    return callback


class KafkaConsumer(JobQueueConsumer):
    def __init__(self, conf: dict[str, Any], topic: str = "genai-jobs", max_receive_count: int = 3,
                 dlq_topic: str | None = None) -> None:
        from confluent_kafka import Consumer, Producer

        self.topic = topic
        self.dlq_topic = dlq_topic or f"{topic}-dlq"
        self.max_receive_count = max_receive_count
        self._consumer = Consumer(conf)
        self._consumer.subscribe([topic])
        producer_conf = {k: v for k, v in conf.items() if k in (
            "bootstrap.servers", "security.protocol", "sasl.mechanism", "oauth_cb", "client.id")}
        self._producer = Producer(producer_conf)
        self._attempts: dict[tuple[int, int], int] = {}

    def receive(self, max_messages: int = 1, wait_seconds: float = 20.0) -> Sequence[ReceivedJob]:
        from confluent_kafka import KafkaError

        msg = self._consumer.poll(wait_seconds)
        if msg is None:
            return []
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return []
            raise QueueUnavailableError(f"kafka poll: {msg.error()}")
        key = (msg.partition(), msg.offset())
        headers = dict(msg.headers() or [])
        seeded = int(headers.get("attempt", b"0") or 0)
        self._attempts[key] = max(self._attempts.get(key, seeded), seeded) + 1
        try:
            message = self.parse(msg.value())
        except MessageFormatError as exc:
            job = ReceivedJob(message=None, handle=key, receive_count=self._attempts[key], raw=msg)  # type: ignore[arg-type]
            self._to_dlq(job, f"malformed: {exc}")
            return []
        return [ReceivedJob(message=message, handle=key, receive_count=self._attempts[key], raw=msg)]

    def _commit(self, job: ReceivedJob) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        partition, offset = job.handle
        try:
            self._consumer.commit(offsets=[TopicPartition(self.topic, partition, offset + 1)], asynchronous=False)
        except KafkaException as exc:
            raise QueueUnavailableError(f"kafka commit {partition}@{offset}: {exc}") from exc
        self._attempts.pop(job.handle, None)

    def ack(self, job: ReceivedJob) -> None:
        self._commit(job)

    def release(self, job: ReceivedJob, delay_seconds: int = 0) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        partition, offset = job.handle
        try:
            self._consumer.seek(TopicPartition(self.topic, partition, offset))
        except KafkaException as exc:  # partition revoked meanwhile: the new owner reads it from the commit
            log.info("kafka seek back %d@%d not possible: %s", partition, offset, exc)

    def extend(self, job: ReceivedJob, visibility_seconds: int) -> None:
        return None  # Kafka has no per-message lease: max.poll.interval.ms covers the longest job

    def _to_dlq(self, job: ReceivedJob, reason: str) -> None:
        msg = job.raw
        headers = [*(msg.headers() or []), ("dlq-reason", reason.encode()[:500]),
                   ("attempt", str(job.receive_count).encode())]
        self._producer.produce(self.dlq_topic, key=msg.key(), value=msg.value(), headers=headers)
        self._producer.flush(10)
        self._commit(job)

    def dead_letter(self, job: ReceivedJob, reason: str) -> None:
        log.warning("job %s written to %s: %s", job.message.job_id, self.dlq_topic, reason)
        self._to_dlq(job, reason)

    def close(self) -> None:
        try:
            self._consumer.close()
        finally:
            self._producer.flush(5)
