"""Kafka consumer for the worker agent (runtime.queues.base.JobQueueConsumer), for Amazon MSK.

Group membership that survives rebalances and restarts:

- cooperative-sticky assignment (a rebalance moves only the partitions that must move) and static
  membership (``group.instance.id`` = the worker's instance id: a restart within ``session.timeout.ms``
  gets its partitions back without a rebalance); manual commits only (``enable.auto.commit`` off).
- One job at a time, and the member keeps polling while it runs: ``receive`` pauses every assigned
  partition before it hands a job out, and a keep-alive thread polls the paused consumer until the job
  is acknowledged or released. Heartbeats, rebalance callbacks and the ``max.poll.interval.ms`` clock are
  served all along, so a 10-minute job never gets its member evicted. Partitions assigned during the
  job are paused as they arrive; a message fetched before a pause took effect is sought back.
- ``ack`` commits ``offset + 1`` after the job record is final. A commit that fails
  (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, coordinator moves, timeouts) is retried
  for ``commit_retry_seconds`` while the consumer keeps polling (so it rejoins with a new generation);
  when the partition was revoked meanwhile, or retries run out, the offset is left uncommitted: the
  message comes again to whoever owns the partition, and the record (final) decides that it is not run
  again. A commit failure is never a job failure: ``ack``, ``release`` and ``dead_letter`` never raise.
- ``release`` seeks back to the message and holds its partition paused for ``delay_seconds``.
- ``dead_letter`` writes the message to ``<topic>-dlq`` (delivery confirmed, bounded retries) and commits.
- ``receive_count`` counts deliveries seen by this member (seeded from a re-published ``attempt``
  header); the job record is where attempts are really counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from runtime.queue_names import KAFKA_TOPIC
from runtime.queues.base import JobQueueConsumer, MessageFormatError, QueueUnavailableError, ReceivedJob
from runtime.queues.kafka_auth import SECURITY_KEYS, security_config

log = logging.getLogger(__name__)

MAX_POLL_INTERVAL_MS = 300_000  # Kafka's default: the keep-alive thread polls every fraction of a second
KEEPALIVE_POLL_S = 0.2


def consumer_config(bootstrap: str, group_id: str, instance_id: str, max_job_seconds: int, iam_auth: bool,
                    region: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The librdkafka settings (exposed for tests and docs). ``max_job_seconds`` no longer bounds the poll
    interval (the consumer polls while jobs run); it is kept for the callers' signature."""
    if not instance_id:
        raise ValueError("instance_id is required: it is the static group.instance.id of this worker")
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "group.instance.id": instance_id,
        "client.id": f"genai-worker-{instance_id}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
        "session.timeout.ms": 45000,
        "partition.assignment.strategy": "cooperative-sticky",
        **security_config(iam_auth, region),
    }
    conf.update(extra or {})
    return conf


def _error_of(exc: Exception) -> Any:
    return exc.args[0] if exc.args else None


class KafkaConsumer(JobQueueConsumer):
    def __init__(self, conf: dict[str, Any], topic: str = KAFKA_TOPIC, max_receive_count: int = 3,
                 dlq_topic: str | None = None, commit_retry_seconds: float = 30.0,
                 dlq_timeout_seconds: float = 30.0, revoke_wait_seconds: float = 240.0) -> None:
        from confluent_kafka import Consumer, Producer

        self.topic = topic
        self.dlq_topic = dlq_topic or f"{topic}-dlq"
        self.max_receive_count = max_receive_count
        self.commit_retry_seconds = commit_retry_seconds
        self.revoke_wait_seconds = revoke_wait_seconds
        self.dlq_timeout_seconds = dlq_timeout_seconds
        self.commit_failures = 0  # commits left to redelivery (tests and drills read it)
        self.revocations = 0  # partitions revoked or lost by this member
        self._lock = threading.RLock()  # every call on the librdkafka consumer goes through it
        self._busy = threading.Event()  # a job handed out and not yet acked / released
        self._busy_cleared = threading.Event()
        self._revoking = threading.Event()  # the keep-alive thread waits in a revoke callback, lock released
        self._closed = threading.Event()
        self._assigned: set[int] = set()
        self._held: dict[int, float] = {}  # partition -> monotonic time it may resume (release with delay)
        self._attempts: dict[tuple[int, int], int] = {}
        self._current: ReceivedJob | None = None
        self._handover_commit: tuple[ReceivedJob, Any] | None = None
        self._acking: tuple[ReceivedJob, Any] | None = None  # (job, offset) while ack's retry loop polls
        self._consumer = Consumer(conf)
        self._consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        producer_conf = {k: v for k, v in conf.items() if k in (*SECURITY_KEYS, "client.id")}
        self._producer = Producer({**producer_conf, "acks": "all"})
        self._keepalive = threading.Thread(target=self._keep_polling, name="kafka-keepalive", daemon=True)
        self._keepalive.start()

    # -- rebalance callbacks (run inside poll, on whichever thread polls, under self._lock) -------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        consumer.incremental_assign(partitions)
        numbers = {tp.partition for tp in partitions}
        self._assigned |= numbers
        if self._busy.is_set() and partitions:  # one job at a time: new partitions wait for the next receive
            consumer.pause(partitions)
        log.info("kafka partitions assigned %s (now %s)", sorted(numbers), sorted(self._assigned))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """A partition is handed over only once its job is settled (bounded), so that its next owner never
        starts the job this member is still running; other partitions go at once (cooperative protocol)."""
        numbers = {tp.partition for tp in partitions}
        job = self._current
        if job is not None and job.handle[0] in numbers:
            if threading.current_thread() is self._keepalive:
                self._wait_settled(job)
            elif self._acking is not None and self._acking[0] is job:  # ack's retry loop is polling
                self._commit_now(*self._acking)
                self._acking = None
        self._give_up(consumer, partitions)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        log.info("kafka partitions lost %s (membership expired or fenced)", sorted(tp.partition for tp in partitions))
        self._give_up(consumer, partitions)  # already someone else's: nothing to wait for

    def _wait_settled(self, job: ReceivedJob) -> None:
        """Runs on the keep-alive thread inside poll, the lock released so that ack / release can settle the
        job meanwhile. librdkafka calls made from another thread while this callback runs can block, so the
        settling thread only leaves the commit here (``_handover_commit``) and this thread makes it."""
        self._revoking.set()
        log.info("kafka partition %d is being revoked while job %s runs: handing it over once settled",
                 job.handle[0], job.message.job_id)
        self._lock.release()
        try:
            deadline = time.monotonic() + self.revoke_wait_seconds
            while self._current is job and not self._closed.is_set() and time.monotonic() < deadline:
                self._busy_cleared.wait(0.2)
        finally:
            self._lock.acquire()
        pending, self._handover_commit = self._handover_commit, None
        if pending is not None:
            self._commit_now(*pending)
        if self._current is job:
            log.warning("kafka partition %d handed over while job %s still runs (%.0fs limit)", job.handle[0],
                        job.message.job_id, self.revoke_wait_seconds)

    def _give_up(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = {tp.partition for tp in partitions}
        self.revocations += len(numbers)
        self._assigned -= numbers
        for number in numbers:
            self._held.pop(number, None)
        log.info("kafka partitions revoked %s (now %s)", sorted(numbers), sorted(self._assigned))
        consumer.incremental_unassign(partitions)
        if self._revoking.is_set():
            self._revoking.clear()
            if not self._busy.is_set():  # the settling thread left the resume to this one
                self._resume_assigned()

    # -- polling --------------------------------------------------------------------------------------
    def _keep_polling(self) -> None:
        while not self._closed.is_set():
            if not self._busy.wait(0.5):
                continue
            with self._lock:
                if self._busy.is_set() and not self._closed.is_set():
                    self._poll_paused(KEEPALIVE_POLL_S)
            self._closed.wait(0.05)  # let ack / release take the lock

    def _poll_paused(self, timeout: float) -> None:
        """Serve the group protocol while a job runs; a message that still came out is sought back."""
        from confluent_kafka import TopicPartition

        msg = self._consumer.poll(timeout)
        if msg is None or msg.error():
            return
        tp = TopicPartition(msg.topic(), msg.partition(), msg.offset())
        try:
            self._consumer.seek(tp)
            self._consumer.pause([TopicPartition(msg.topic(), msg.partition())])
        except Exception as exc:  # noqa: BLE001 - KafkaException; the uncommitted offset brings it back anyway
            log.info("kafka: could not put back %d@%d: %s", msg.partition(), msg.offset(), exc)

    def _partitions(self, numbers: Sequence[int] | set[int]) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition(self.topic, n) for n in sorted(numbers)]

    def _resume_ready(self) -> None:
        now = time.monotonic()
        for number, at in list(self._held.items()):
            if at <= now:
                self._held.pop(number)
                self._safe(self._consumer.resume, self._partitions([number]))

    def _safe(self, call: Any, *args: Any) -> bool:
        from confluent_kafka import KafkaException

        try:
            call(*args)
            return True
        except KafkaException as exc:
            log.info("kafka %s: %s", getattr(call, "__name__", call), exc)
            return False

    def receive(self, max_messages: int = 1, wait_seconds: float = 20.0) -> Sequence[ReceivedJob]:
        if self._current is not None:  # never settled (a bug upstream): put it back rather than skip it
            log.error("kafka: job %s was neither acknowledged nor released; handing it back",
                      self._current.message.job_id if self._current.message else self._current.handle)
            self.release(self._current)
        handover_deadline = time.monotonic() + self.revoke_wait_seconds + 5
        while self._revoking.is_set() and not self._closed.is_set() and time.monotonic() < handover_deadline:
            self._closed.wait(0.05)  # the keep-alive thread is finishing a hand-over inside its poll
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while not self._closed.is_set():
            with self._lock:
                self._resume_ready()
                msg = self._consumer.poll(max(0.0, min(1.0, deadline - time.monotonic())))
                if msg is not None:
                    return self._take(msg)
            if time.monotonic() >= deadline:
                break
        return []

    def _take(self, msg: Any) -> Sequence[ReceivedJob]:
        from confluent_kafka import KafkaError

        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return []
            raise QueueUnavailableError(f"kafka poll: {msg.error()}")
        key = (msg.partition(), msg.offset())
        seeded = int(dict(msg.headers() or []).get("attempt", b"0") or 0)
        self._attempts[key] = max(self._attempts.get(key, seeded), seeded) + 1
        self._safe(self._consumer.pause, self._consumer.assignment())
        self._busy_cleared.clear()
        self._busy.set()
        try:
            message = self.parse(msg.value())
        except MessageFormatError as exc:
            job = ReceivedJob(message=None, handle=key, receive_count=self._attempts[key], raw=msg)  # type: ignore[arg-type]
            self._to_dlq(job, f"malformed: {exc}")
            return []
        self._current = ReceivedJob(message=message, handle=key, receive_count=self._attempts[key], raw=msg)
        return [self._current]

    def _done(self) -> None:
        """The job is settled: resume every assigned partition that is not held back by a delayed release
        (during a hand-over, the keep-alive thread does that once it has let the partition go)."""
        with self._lock:
            self._busy.clear()
            self._current = None
            self._busy_cleared.set()
            if not self._revoking.is_set():
                self._resume_assigned()

    def _resume_assigned(self) -> None:
        ready = [n for n in self._assigned if n not in self._held]
        if ready:
            self._safe(self._consumer.resume, self._partitions(ready))

    # -- settling a job ---------------------------------------------------------------------------------
    def _commit(self, job: ReceivedJob) -> bool:
        """Commit ``offset + 1``; retried through rebalances; False = left to redelivery (never raises)."""
        from confluent_kafka import KafkaException, TopicPartition

        partition, offset = job.handle
        deadline = time.monotonic() + self.commit_retry_seconds
        while True:
            with self._lock:
                if partition not in self._assigned:
                    return self._left_to_redelivery(job, "partition revoked before the commit")
                if self._revoking.is_set():  # the keep-alive thread commits it inside the revoke callback
                    self._handover_commit = (job, TopicPartition(self.topic, partition, offset + 1))
                    return True
                try:
                    self._consumer.commit(offsets=[TopicPartition(self.topic, partition, offset + 1)],
                                          asynchronous=False)
                    self._attempts.pop(job.handle, None)
                    return True
                except KafkaException as exc:
                    error = _error_of(exc)
                if time.monotonic() >= deadline or self._closed.is_set():
                    return self._left_to_redelivery(job, f"commit kept failing: {error}")
                log.info("kafka commit %d@%d failed (%s); retrying after the group settles", partition, offset, error)
                # Serves the rebalance, so the retry carries the new generation; if that rebalance revokes
                # this partition, the revoke callback commits the offset (allowed there) and clears _acking.
                self._acking = (job, TopicPartition(self.topic, partition, offset + 1))
                self._poll_paused(0.2)
                if self._acking is None:
                    return True
                self._acking = None

    def _commit_now(self, job: ReceivedJob, offset: Any) -> None:
        """The hand-over commit, on the thread inside the revoke callback (the protocol allows it there)."""
        from confluent_kafka import KafkaException

        try:
            self._consumer.commit(offsets=[offset], asynchronous=False)
            self._attempts.pop(job.handle, None)
        except KafkaException as exc:
            self._left_to_redelivery(job, f"hand-over commit failed: {_error_of(exc)}")

    def _left_to_redelivery(self, job: ReceivedJob, why: str) -> bool:
        self.commit_failures += 1
        partition, offset = job.handle
        log.warning("kafka offset %d@%d of job %s not committed (%s): the message comes again and its final "
                    "record keeps it from running twice", partition, offset,
                    job.message.job_id if job.message else "?", why)
        return False

    def ack(self, job: ReceivedJob) -> None:
        try:
            self._commit(job)
        finally:
            self._done()

    def release(self, job: ReceivedJob, delay_seconds: int = 0) -> None:
        from confluent_kafka import TopicPartition

        partition, offset = job.handle
        try:
            with self._lock:
                if self._revoking.is_set():  # being handed over uncommitted: the next owner reads it again
                    log.info("kafka %d@%d released while its partition is handed over", partition, offset)
                elif partition in self._assigned:
                    self._safe(self._consumer.seek, TopicPartition(self.topic, partition, offset))
                    if delay_seconds > 0:
                        self._held[partition] = time.monotonic() + delay_seconds
                else:  # revoked meanwhile: the new owner reads it from the committed offset
                    log.info("kafka %d@%d released after its partition moved", partition, offset)
        finally:
            self._done()

    def extend(self, job: ReceivedJob, visibility_seconds: int) -> None:
        return None  # no per-message lease: the keep-alive thread keeps the membership (and the partition)

    def _produce_dlq(self, job: ReceivedJob, reason: str) -> bool:
        from confluent_kafka import KafkaException

        msg = job.raw
        headers = [*(msg.headers() or []), ("dlq-reason", reason.encode()[:500]),
                   ("attempt", str(job.receive_count).encode())]
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def delivered(err: Any, _msg: Any) -> None:
            outcome["err"] = err
            done.set()

        deadline = time.monotonic() + self.dlq_timeout_seconds
        try:
            self._producer.produce(self.dlq_topic, key=msg.key(), value=msg.value(), headers=headers,
                                   on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            log.error("kafka DLQ produce to %s failed: %s", self.dlq_topic, exc)
            return False
        while not done.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.1)
        if not done.is_set() or outcome.get("err") is not None:
            log.error("kafka DLQ write to %s not confirmed: %s", self.dlq_topic, outcome.get("err", "timed out"))
            return False
        return True

    def _to_dlq(self, job: ReceivedJob, reason: str) -> None:
        try:
            if self._produce_dlq(job, reason):
                self._commit(job)
            else:  # not committed: it comes again, and reaches the DLQ (or its final record) then
                self._left_to_redelivery(job, "dead-letter write failed")
                self.release(job, 5)
        finally:
            self._done()

    def dead_letter(self, job: ReceivedJob, reason: str) -> None:
        log.warning("job %s written to %s: %s", job.message.job_id, self.dlq_topic, reason)
        self._to_dlq(job, reason)

    def close(self) -> None:
        self._closed.set()
        self._keepalive.join(timeout=5)
        try:
            with self._lock:
                self._consumer.close()
        finally:
            self._producer.flush(5)
