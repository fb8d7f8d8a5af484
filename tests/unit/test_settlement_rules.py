"""Settlement's ordering and the failure table's infrastructure rows, on the real Settlement with recording fakes
(issue 33, findings 2 and 4): the message is acknowledged only after the final record is written, and an
infrastructure failure hands the attempt back uncounted, on every attempt, the last one included."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.backends.base import (
    BackendBusy,
    BackendError,
    BackendResult,
    JobContext,
    JobInputError,
    JobInterrupted,
    OutputFile,
)
from runtime.jobs.attempts import Attempt
from runtime.jobs.errors import StoreUnavailableError
from runtime.jobs.schema import JobSpec
from runtime.queues.base import QueueError, QueueMessage, ReceivedJob
from runtime.worker.aws import AWSCallError
from runtime.worker.backoff import InfraBackoff
from runtime.worker.failures import TABLE, Cause, classify
from runtime.worker.messages import MessageActions
from runtime.worker.metrics import Metrics
from runtime.worker.outcomes import Outcome, StopReason
from runtime.worker.outputs import OutputUploader
from runtime.worker.running_job import RunningJob
from runtime.worker.settlement import Settlement
from runtime.worker.stop_signal import StopSignal

INFRASTRUCTURE = [AWSCallError("S3 PutObject: SlowDown"), StoreUnavailableError("DynamoDB throttled"),
                  QueueError("SQS unreachable"), OSError(28, "No space left on device"),
                  BackendBusy("ComfyUI had not started the prompt by its start limit")]  # issue 34: never ran


class Journal(list):
    """Every store, queue and object-store call, in the order they happened."""


class Store:
    """The JobStore calls Settlement makes; ``fail`` names the calls that raise StoreUnavailableError."""

    def __init__(self, journal: Journal, fail: tuple[str, ...] = ()) -> None:
        self.journal, self.fail = journal, fail
        self.record: dict[str, Any] = {"job_id": "j1", "status": "running", "attempts": 1, "lease": 1}
        self.attempts = self  # the attempt transitions (JobStore.attempts) are recorded in the same journal

    def _call(self, name: str, *args: Any) -> bool:
        self.journal.append(name)
        if name in self.fail:
            raise StoreUnavailableError(f"{name}: throttled")
        return True

    def mark_succeeded(self, job_id, outputs, timings, lease, cost=None):
        return self._call("mark_succeeded")

    def mark_failed(self, job_id, error, timings=None, lease=None, cost=None):
        return self._call("mark_failed")

    def mark_canceled(self, job_id, lease, cost=None):
        return self._call("mark_canceled")

    def release_attempt(self, job_id, lease, cost=None):
        return self._call("release_attempt")

    def fail_attempt(self, job_id, lease, number, entry, cost=None):
        return self._call("fail_attempt")

    def record_attempt_error(self, job_id, number, entry):
        return self._call("record_attempt_error")

    def get(self, job_id):
        self.journal.append("get")
        return dict(self.record)


class Consumer:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def ack(self, received):
        self.journal.append("ack")

    def release(self, received, delay):
        self.journal.append(f"release:{delay}")

    def dead_letter(self, received, reason):
        self.journal.append("dead_letter")


class Objects:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def put(self, key, data, content_type, metadata=None, cache_control=None):
        self.journal.append("put")

    def delete(self, key):
        self.journal.append("delete")


def _settlement(journal: Journal, store: Store, max_attempts: int = 3) -> Settlement:
    return Settlement(store=store, messages=MessageActions(Consumer(journal)),
                      uploader=OutputUploader(Objects(journal)),
                      metrics=Metrics(sink="memory"), backoff=InfraBackoff(StopSignal()),
                      checkpoint=lambda job, fresh_s=0.0: None, worker_id="w", generator="fake",
                      max_attempts=max_attempts, retry_delay_seconds=7)


def _job(number: int = 1) -> RunningJob:
    message = QueueMessage(job_id="j1", job={"model": "m", "task": "txt2img", "inputs": {"prompt": "p"}})
    job = RunningJob(ReceivedJob(message, handle="h1"), JobContext(job_id="j1", job=JobSpec.parse(message.job)),
                     Attempt("started", {}, number, number))
    job.timings.update(queue_wait_ms=1.0, model_load_ms=1.0, inference_ms=1.0)
    return job


def _result() -> BackendResult:
    return BackendResult([OutputFile("a.png", b"png", "image/png")])


def test_the_message_is_acknowledged_after_the_final_record_is_written():
    journal = Journal()
    outcome = _settlement(journal, Store(journal)).settle(_job(), _result())
    assert outcome is Outcome.SUCCEEDED
    assert journal == ["put", "mark_succeeded", "ack"]


def test_a_final_write_that_fails_leaves_the_message_unacknowledged():
    """Acknowledging first would lose the job: the record stays running and no message would bring it back."""
    journal = Journal()
    outcome = _settlement(journal, Store(journal, fail=("mark_succeeded",))).settle(_job(), _result())
    assert "ack" not in journal, journal
    assert outcome is Outcome.DEFERRED and journal[-1] == "release:1"  # handed back after the first backoff step


@pytest.mark.parametrize("exc", INFRASTRUCTURE, ids=lambda e: type(e).__name__)
def test_infrastructure_rows_of_the_table_are_not_counted(exc):
    disposition = classify(exc)
    assert disposition.cause is Cause.INFRASTRUCTURE and not disposition.counted


@pytest.mark.parametrize("number", [1, 3], ids=["first-attempt", "last-attempt"])
@pytest.mark.parametrize("exc", INFRASTRUCTURE, ids=lambda e: type(e).__name__)
def test_an_infrastructure_failure_hands_the_attempt_back_uncounted(exc, number):
    journal = Journal()
    outcome = _settlement(journal, Store(journal), max_attempts=3).settle(_job(number), exc)
    assert outcome is Outcome.DEFERRED
    assert journal == ["release_attempt", "release:1"]  # no attempt error, no final write, no ack, no dead letter


def test_the_table_names_every_infrastructure_class_once():
    infra = [kind for kind, disposition in TABLE if disposition.cause is Cause.INFRASTRUCTURE]
    assert infra == [BackendBusy, AWSCallError, StoreUnavailableError, QueueError, OSError]


def test_a_permanent_failure_is_recorded_before_the_message_is_acknowledged():
    journal = Journal()
    outcome = _settlement(journal, Store(journal)).settle(_job(), JobInputError("width must be a multiple of 8"))
    assert outcome is Outcome.FAILED
    assert journal == ["mark_failed", "ack"]


def test_the_last_attempt_is_recorded_failed_before_the_message_is_dead_lettered():
    journal = Journal()
    outcome = _settlement(journal, Store(journal), max_attempts=3).settle(_job(3), BackendError("CUDA error"))
    assert outcome is Outcome.FAILED
    assert journal == ["record_attempt_error", "get", "mark_failed", "dead_letter"]


def test_a_cancel_is_recorded_before_the_message_is_acknowledged():
    journal = Journal()
    job = _job()
    job.reason = StopReason.CANCEL
    outcome = _settlement(journal, Store(journal)).settle(job, JobInterrupted("canceled"))
    assert outcome is Outcome.CANCELED
    assert journal == ["mark_canceled", "ack"]


def test_a_fenced_out_attempt_leaves_a_running_job_s_message_alone():
    """Another attempt owns the job (running): its message is that attempt's to acknowledge, not ours."""
    journal = Journal()
    store = Store(journal)
    store.mark_succeeded = lambda *a, **k: journal.append("mark_succeeded") or False  # fenced: not written
    store.record.update(lease=2)
    outcome = _settlement(journal, store).settle(_job(), _result())
    assert outcome is Outcome.LOST_LEASE
    assert journal == ["put", "mark_succeeded", "delete", "get"]  # outputs discarded, no ack
    store.record.update(status="succeeded")
    journal.clear()
    _settlement(journal, store).settle(_job(), _result())
    assert journal == ["put", "mark_succeeded", "delete", "get", "ack"]  # final already: the redelivery is done
