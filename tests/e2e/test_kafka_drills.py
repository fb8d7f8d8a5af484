"""Kafka drill: consumer-group rebalances while jobs flow. Workers join (three times), one leaves on SIGTERM
(it hands its job back) and one is SIGKILLed mid-job (a static member: its partitions wait out the session
timeout, then move). Every rebalance in between revokes partitions that may hold a running job and makes
commits fail with REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION for a moment.

Asserts the ledger is clean (nothing lost, nothing done twice, nothing failed), that no attempt error was
recorded at all (a commit failure is never a job failure; a kill or a hand-back is not an attempt error),
and that the Kafka DLQ topic stayed empty. Prints the ledger line, the assignments and revocations the workers
saw, how many commits were retried through rebalance errors and how many offsets were left to redelivery.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from fleetdev.local.platform import KAFKA_TOPIC
from tests.e2e._helpers import assert_clean, record, running_on, store, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BATCHES, PER_BATCH = 12, 4


def _dlq_depth(bootstrap: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "drill-dlq-reader"})
    try:
        topic = f"{KAFKA_TOPIC}-dlq"
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                   for p in metadata.partitions)
    finally:
        consumer.close()


def _count(platform, needle: str) -> int:
    return sum(w.process.log_path.read_text(errors="replace").count(needle) for w in platform.workers)


def test_rebalances_while_jobs_flow(start_platform) -> None:
    platform = start_platform(queue_kind="kafka", workers=2, test_pattern_delay_seconds=0.6,
                              kafka_session_timeout_ms=6000)
    ledger = platform.ledger
    ids: list[str] = []
    errors: list[BaseException] = []
    submitted_all = threading.Event()

    def submit_steadily() -> None:
        try:
            for _ in range(BATCHES):
                ids.extend(ledger.submit_batch(PER_BATCH, retry_for=60))
                time.sleep(1.0)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            submitted_all.set()

    submitter = threading.Thread(target=submit_steadily, daemon=True)
    submitter.start()
    w0, w1 = platform.workers
    wait_until(lambda: len(ids) >= 4, 30, "the first jobs submitted")

    joined = [platform.add_worker()]  # join while both run jobs
    wait_until(lambda: running_on(platform, list(ids), w1.instance_id), 30, "a job running on worker-1")
    w1.process.stop(grace=30)  # leave: SIGTERM, the running job handed back
    assert w1.process.proc.returncode == 0, w1.process.tail()
    joined.append(platform.add_worker())
    victim = wait_until(lambda: running_on(platform, list(ids), w0.instance_id, started_within=0.4), 40,
                        "a job that just started on worker-0")
    w0.process.kill()  # crash mid-job: no hand-back, no commit
    joined.append(platform.add_worker())

    assert submitted_all.wait(120) and not errors, errors
    submitter.join(timeout=10)
    views = ledger.wait_final(ids, timeout=150)
    report = ledger.report(ids)
    rounds, revoked = _count(platform, "kafka partitions assigned"), _count(platform, "kafka partitions revoked")
    retried, left = _count(platform, "retrying after the group settles"), _count(platform, "not committed")
    print(f"{len(platform.workers)} workers over the run: {rounds} assignments seen, {revoked} revocations, "
          f"{retried} commit retries (rebalance errors), {left} offsets left to redelivery; "
          f"job on the killed worker: {victim}")
    record("drill Kafka rebalances (3 joins, 1 SIGTERM leave, 1 SIGKILL)", report)
    assert_clean(report, submitted=BATCHES * PER_BATCH)
    assert all(v["status"] == "succeeded" for v in views.values())
    records = {j: store(platform).get(j) for j in ids}
    with_errors = {j: r["attempt_errors"] for j, r in records.items() if r.get("attempt_errors")}
    assert not with_errors, f"attempt errors recorded (commit failures must never count): {with_errors}"
    assert records[victim]["worker_id"] != w0.instance_id, records[victim]
    assert _dlq_depth(platform.kafka_bootstrap) == 0
    assert rounds >= 5, "the drill did not make the group rebalance (3 joins, a leave and a kill)"
    assert all(w.process.alive() for w in joined)
